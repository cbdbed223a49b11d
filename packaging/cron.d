# geodir's scheduled jobs (from the geodir package; your own crontab is left alone).
# Each runs /usr/lib/geodir/geodir-cron, which reads /etc/geodir/cron.conf, takes a lock
# (a run never overlaps the one before), logs to /var/log/geodir/JOB.log and exits
# non-zero on failure, saying so on stderr (cron mails it). Nothing runs until
# GEODIR_CRON=yes in /etc/geodir/cron.conf.
SHELL=/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin

# Daily backup (create, verify, prune) at 02:17.
17 2 * * *   geodir   test -x /usr/lib/geodir/geodir-cron && /usr/lib/geodir/geodir-cron backup
# Daily purge of recycle-bin objects deleted 30 days ago or more, at 02:47.
47 2 * * *   geodir   test -x /usr/lib/geodir/geodir-cron && /usr/lib/geodir/geodir-cron purge-expired
# Weekly scrub (every replica read end to end; damage marked and named), Sundays 03:47.
47 3 * * 0   geodir   test -x /usr/lib/geodir/geodir-cron && /usr/lib/geodir/geodir-cron scrub
# Hourly anchor of the audit chains (each partition's head, signed, in the control plane),
# at 7 minutes past: `dirctl audit verify` then catches a chain rewritten since.
7 * * * *    geodir   test -x /usr/lib/geodir/geodir-cron && /usr/lib/geodir/geodir-cron audit-anchor
