//! The `Directory` service (proto/geodir/v1/directory.proto): requests from clients and
//! writes sent on by other servers, carried out by this server's `Node` on tokio's
//! blocking pool (they fsync and wait on other servers).

use std::sync::Arc;

use engine::operators::{Need, Role};
use engine::request::{Envelope, Request};
use engine::Error;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Response, Status};

use crate::guard::{self, Call};
use crate::node::Node;
use crate::pb::directory_server::Directory;
use crate::pb::execute_event::Event;
use crate::pb::{
    ApprovalReply, ApprovalRequest, ApproveRequest, CarryOutReply, CarryOutRequest, ElevateReply,
    ElevateRequest, LoginReply, LoginRequest, RebuildReply, RebuildRequest,
};
use crate::pb::{
    CheckpointChunk, CheckpointDone, CheckpointRequest, ExecuteEvent, ExecuteReply, ExecuteRequest,
    FailoverReply, FailoverRequest, MeasuredLag, ProbeReply, ProbeRequest, SetDrainedReply,
    SetDrainedRequest, StatusReply, StatusRequest, TopologyReply, TopologyRequest,
};
use crate::status::to_status;

pub struct DirectoryService {
    node: Arc<Node>,
}

impl DirectoryService {
    pub fn new(node: Arc<Node>) -> DirectoryService {
        DirectoryService { node }
    }

    /// Whether the caller of `req` may make `call` (`crate::guard`); refused: "not
    /// permitted", audited.
    /// Permitted: the operator proven (None on an open cluster, or for a server).
    async fn permit<T>(
        &self,
        req: &tonic::Request<T>,
        call: Call,
        what: String,
    ) -> Result<Option<String>, Status> {
        let credential = guard::presented(req.metadata()).map(str::to_string);
        let node = self.node.clone();
        let correlation = uuid::Uuid::new_v4().to_string();
        crate::inline_call(move || {
            node.permit(credential.as_deref(), &call, &what, "unknown", &correlation)
        })
        .await
    }
}

/// A privileged call: an operator with an active elevation to `operator`.
fn privileged() -> Call {
    Call::Need(Need::Elevated(Role::Operator))
}

/// A request's JSON, decoded; malformed input is refused with nothing applied.
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Status> {
    serde_json::from_slice(bytes).map_err(|e| {
        tracing::warn!(error = %e, "malformed {what} refused");
        to_status(&Error::Invalid(format!(
            "malformed {what}, refused (nothing was applied): {e}"
        )))
    })
}

/// The files of a checkpoint folder, each in chunks of at most 1 MiB, in name order.
fn send_files(
    folder: &std::path::Path,
    tx: &tokio::sync::mpsc::Sender<Result<CheckpointChunk, Status>>,
) -> Result<(), Status> {
    use std::io::Read as _;
    let failed = |what: String, e: std::io::Error| Status::internal(format!("{what}: {e}"));
    let mut names = Vec::new();
    for e in
        std::fs::read_dir(folder).map_err(|e| failed(format!("read {}", folder.display()), e))?
    {
        let e = e.map_err(|e| failed(format!("read {}", folder.display()), e))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    for name in names {
        let path = folder.join(&name);
        let mut f = std::fs::File::open(&path)
            .map_err(|e| failed(format!("open {}", path.display()), e))?;
        let mut first = true;
        loop {
            let mut data = vec![0; 1 << 20];
            let n = f
                .read(&mut data)
                .map_err(|e| failed(format!("read {}", path.display()), e))?;
            data.truncate(n);
            if n == 0 && !first {
                break;
            }
            let chunk = CheckpointChunk {
                file: if first { name.clone() } else { String::new() },
                data,
                done: None,
            };
            if tx.blocking_send(Ok(chunk)).is_err() {
                return Err(Status::cancelled("the client went away"));
            }
            first = false;
            if n == 0 {
                break;
            }
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl Directory for DirectoryService {
    type ExecuteStream = ReceiverStream<Result<ExecuteEvent, Status>>;

    async fn execute(
        &self,
        req: tonic::Request<ExecuteRequest>,
    ) -> Result<Response<Self::ExecuteStream>, Status> {
        let credential = guard::presented(req.metadata()).map(str::to_string);
        let ExecuteRequest {
            envelope,
            request,
            forwarded,
        } = req.into_inner();
        let mut envelope: Envelope = decode(&envelope, "envelope")?;
        let request: Request = decode(&request, "request")?;
        let node = self.node.clone();
        let streams = engine::executor::streams_progress(&request);
        let work = move |emit: &mut dyn FnMut(Result<ExecuteEvent, Status>)| {
            // A write sent on by a server was judged where it came in; a client's call is
            // judged by what the request needs, and its records name who is proven.
            let call = match (forwarded, engine::operators::need_of(&request)) {
                (true, _) => Call::Server,
                (false, None) => Call::Audit,
                (false, Some(need)) => Call::Need(need),
            };
            let what = request
                .audit_op()
                .unwrap_or_else(|| request.name().to_string());
            match node.permit(
                credential.as_deref(),
                &call,
                &what,
                &envelope.actor,
                &envelope.correlation_id,
            ) {
                Ok(Some(actor)) => envelope.actor = actor,
                Ok(None) => {}
                Err(e) => return emit(Err(to_status(&e))),
            }
            let got = node.execute(&envelope, request, forwarded, &mut |p| {
                if let Ok(b) = serde_json::to_vec(p) {
                    emit(Ok(ExecuteEvent {
                        event: Some(Event::Progress(b)),
                    }));
                }
            });
            let last = got
                .map_err(|e| to_status(&e))
                .and_then(|(response, notes)| {
                    let json = |v: serde_json::Result<Vec<u8>>| {
                        v.map_err(|e| Status::internal(format!("encode the reply: {e}")))
                    };
                    Ok(ExecuteEvent {
                        event: Some(Event::Reply(ExecuteReply {
                            response: json(serde_json::to_vec(&response))?,
                            notes: notes
                                .iter()
                                .map(|n| json(serde_json::to_vec(n)))
                                .collect::<Result<_, _>>()?,
                        })),
                    })
                });
            emit(last);
        };
        // A request that reports progress (a bulk load) streams it as it goes; any other is
        // carried out in place and answered in one go (its headers, reply and trailers
        // together), with no hand-off to another thread and back.
        if streams {
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            tokio::task::spawn_blocking(move || {
                work(&mut |e| {
                    let _ = tx.blocking_send(e);
                })
            });
            return Ok(Response::new(ReceiverStream::new(rx)));
        }
        let events = crate::inline(move || {
            let mut events = Vec::new();
            work(&mut |e| events.push(e));
            events
        })
        .await
        .map_err(|e| Status::internal(format!("request task failed: {e}")))?;
        let (tx, rx) = tokio::sync::mpsc::channel(events.len().max(1));
        for e in events {
            let _ = tx.try_send(e);
        }
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type CheckpointStream = ReceiverStream<Result<CheckpointChunk, Status>>;

    async fn checkpoint(
        &self,
        req: tonic::Request<CheckpointRequest>,
    ) -> Result<Response<Self::CheckpointStream>, Status> {
        self.permit(
            &req,
            Call::Need(Need::Job(engine::operators::Job::Backup)),
            "backup create".into(),
        )
        .await?;
        let partition = req.into_inner().partition;
        let node = self.node.clone();
        let (tmp, pos, source) = crate::inline_call(move || node.checkpoint(partition)).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let folder = tmp.path().join(format!("p{partition}"));
            let sent = send_files(&folder, &tx);
            let last = sent.map(|()| CheckpointChunk {
                file: String::new(),
                data: Vec::new(),
                done: Some(CheckpointDone {
                    term: pos.term,
                    lsn: pos.lsn,
                    source,
                }),
            });
            if let Err(s) = &last {
                tracing::warn!(partition, error = %s, "checkpoint not sent");
            }
            let _ = tx.blocking_send(last);
            drop(tmp);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn topology(
        &self,
        _req: tonic::Request<TopologyRequest>,
    ) -> Result<Response<TopologyReply>, Status> {
        let credential = guard::presented(_req.metadata()).map(str::to_string);
        let node = self.node.clone();
        let (mut t, proven) =
            crate::inline_call(move || Ok((node.topology()?, node.proves(credential.as_deref()))))
                .await?;
        // Operators' sealed secrets stay in the control plane; a caller nothing proves sees
        // that there are operators (and who), not their roles, lock-outs, elevations or
        // requests.
        for o in t.operators.values_mut() {
            o.sealed_secret.clear();
            if !proven {
                o.roles.clear();
                o.locked_until = None;
                o.failures = 0;
            }
        }
        if !proven {
            t.elevations.clear();
            t.pending.clear();
        }
        let topology = serde_json::to_vec(&t)
            .map_err(|e| Status::internal(format!("encode the topology: {e}")))?;
        Ok(Response::new(TopologyReply { topology }))
    }

    async fn probe(
        &self,
        _req: tonic::Request<ProbeRequest>,
    ) -> Result<Response<ProbeReply>, Status> {
        let node = self.node.clone();
        let datacenter = node.datacenter.clone();
        let (healthy, replicas) = crate::inline_call(move || node.probe()).await?;
        Ok(Response::new(ProbeReply {
            datacenter,
            replicas,
            healthy,
        }))
    }

    async fn failover(
        &self,
        req: tonic::Request<FailoverRequest>,
    ) -> Result<Response<FailoverReply>, Status> {
        let partition = req.get_ref().partition;
        let what = format!("failover of partition {partition}");
        let operator = self.permit(&req, privileged(), what).await?;
        // What cannot be undone needs a second operator's approval (the two-person rule).
        if let (true, Some(who)) = (req.get_ref().accept_data_loss, operator) {
            let approval = req.get_ref().approval.clone();
            let node = self.node.clone();
            let correlation = uuid::Uuid::new_v4().to_string();
            crate::inline_call(move || {
                node.two_person(
                    &who,
                    &approval,
                    "failover --accept-data-loss",
                    partition,
                    &correlation,
                )
            })
            .await?;
        }
        let FailoverRequest {
            partition,
            to,
            emergency,
            accept_data_loss,
            approval: _,
        } = req.into_inner();
        let node = self.node.clone();
        let report =
            crate::inline_call(move || node.failover(partition, &to, emergency, accept_data_loss))
                .await?;
        let report = serde_json::to_vec(&report)
            .map_err(|e| Status::internal(format!("encode the report: {e}")))?;
        Ok(Response::new(FailoverReply { report }))
    }

    async fn status(
        &self,
        req: tonic::Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        self.permit(&req, Call::Need(Need::Read), "status".into())
            .await?;
        let node = self.node.clone();
        let (rows, lags) = crate::inline_call(move || node.status()).await?;
        let replicas = serde_json::to_vec(&rows)
            .map_err(|e| Status::internal(format!("encode the status: {e}")))?;
        let lags = lags
            .into_iter()
            .map(|((partition, datacenter), lag)| MeasuredLag {
                partition,
                datacenter,
                entries: lag.entries,
                seconds: lag.seconds,
            })
            .collect();
        Ok(Response::new(StatusReply { replicas, lags }))
    }

    async fn rebuild(
        &self,
        req: tonic::Request<RebuildRequest>,
    ) -> Result<Response<RebuildReply>, Status> {
        self.permit(&req, privileged(), "dc rebuild".into()).await?;
        let reseed = req.into_inner().reseed;
        let node = self.node.clone();
        let reports = crate::inline_call(move || node.rebuild(&reseed)).await?;
        let reports = serde_json::to_vec(&reports)
            .map_err(|e| Status::internal(format!("encode the reports: {e}")))?;
        Ok(Response::new(RebuildReply { reports }))
    }

    async fn set_drained(
        &self,
        req: tonic::Request<SetDrainedRequest>,
    ) -> Result<Response<SetDrainedReply>, Status> {
        let what = match req.get_ref().drained {
            true => format!("dc drain {}", req.get_ref().datacenter),
            false => format!("dc undrain {}", req.get_ref().datacenter),
        };
        self.permit(&req, privileged(), what).await?;
        let SetDrainedRequest {
            datacenter,
            drained,
        } = req.into_inner();
        let node = self.node.clone();
        crate::inline_call(move || node.set_drained(&datacenter, drained)).await?;
        Ok(Response::new(SetDrainedReply {}))
    }

    async fn login(
        &self,
        req: tonic::Request<LoginRequest>,
    ) -> Result<Response<LoginReply>, Status> {
        let LoginRequest {
            operator,
            code,
            seconds,
            correlation_id,
        } = req.into_inner();
        let node = self.node.clone();
        let login =
            crate::inline_call(move || node.login(&operator, &code, seconds, &correlation_id))
                .await?;
        let login = serde_json::to_vec(&login)
            .map_err(|e| Status::internal(format!("encode the login: {e}")))?;
        Ok(Response::new(LoginReply { login }))
    }

    async fn elevate(
        &self,
        req: tonic::Request<ElevateRequest>,
    ) -> Result<Response<ElevateReply>, Status> {
        let credential = guard::presented(req.metadata()).map(str::to_string);
        let ElevateRequest {
            role,
            seconds,
            reason,
            code,
            correlation_id,
        } = req.into_inner();
        let asked = crate::proof::ElevationAsked::new(&role, seconds, &reason)
            .map_err(|e| to_status(&e))?;
        let node = self.node.clone();
        let e = crate::inline_call(move || {
            node.elevate(credential.as_deref(), &asked, &code, &correlation_id)
        })
        .await?;
        let elevation = serde_json::to_vec(&e)
            .map_err(|e| Status::internal(format!("encode the elevation: {e}")))?;
        Ok(Response::new(ElevateReply { elevation }))
    }

    async fn request_approval(
        &self,
        req: tonic::Request<ApprovalRequest>,
    ) -> Result<Response<ApprovalReply>, Status> {
        let credential = guard::presented(req.metadata()).map(str::to_string);
        let ApprovalRequest {
            what,
            args,
            correlation_id,
        } = req.into_inner();
        let node = self.node.clone();
        let refusal = crate::inline_call(move || {
            node.request_approval(credential.as_deref(), &what, args, &correlation_id)
        })
        .await?;
        Err(to_status(&refusal))
    }

    async fn approve(
        &self,
        req: tonic::Request<ApproveRequest>,
    ) -> Result<Response<ApprovalReply>, Status> {
        let credential = guard::presented(req.metadata()).map(str::to_string);
        let ApproveRequest {
            id,
            code,
            correlation_id,
        } = req.into_inner();
        let node = self.node.clone();
        let p = crate::inline_call(move || {
            node.approve(credential.as_deref(), &id, &code, &correlation_id)
        })
        .await?;
        let pending = serde_json::to_vec(&p)
            .map_err(|e| Status::internal(format!("encode the request: {e}")))?;
        Ok(Response::new(ApprovalReply { pending }))
    }

    async fn carry_out(
        &self,
        req: tonic::Request<CarryOutRequest>,
    ) -> Result<Response<CarryOutReply>, Status> {
        let credential = guard::presented(req.metadata()).map(str::to_string);
        let CarryOutRequest {
            id,
            args,
            correlation_id,
            what,
        } = req.into_inner();
        let node = self.node.clone();
        let done = crate::inline_call(move || {
            node.carry_out(credential.as_deref(), &id, &args, &what, &correlation_id)
        })
        .await?;
        Ok(Response::new(CarryOutReply { done }))
    }
}
