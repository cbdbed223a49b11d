//! Values shown as one line of text: a report's result or a replica's health is an enum in
//! the code, and the same text in tables and in `--output json`.

/// Implements `Serialize` (as the `Display` text) and comparison with a `&str` for `$t`.
macro_rules! shown_as_text {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl PartialEq<&str> for $t {
            // Rare (a report's checks), so the text is built to compare.
            #[allow(clippy::cmp_owned)]
            fn eq(&self, text: &&str) -> bool {
                self.to_string() == *text
            }
        }
    };
}

pub(crate) use shown_as_text;
