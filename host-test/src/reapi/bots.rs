//! The Remote Workers API's Bots service
//! (`google.devtools.remoteworkers.v1test2`), which `bazel-remote-apis`
//! does not carry: its messages, written by hand with the field numbers of
//! `bots.proto` and `worker.proto`, and a client for its two calls. Knows
//! the wire format; knows nothing of what a bot does with a lease.

use std::time::Duration;

use bazel_remote_apis::google::protobuf::{Any, Timestamp};
use bazel_remote_apis::google::rpc::Status;
use prost::Message;

use tonic::transport::Channel;

/// A bot's session with the server: who it is, what it can do, and the
/// leases it holds.
#[derive(Clone, PartialEq, Message)]
pub struct BotSession {
    /// Given by the server on creation (`{parent}/{uuid}` for BuildGrid).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Chosen by the bot; stable across its restarts.
    #[prost(string, tag = "2")]
    pub bot_id: String,
    #[prost(enumeration = "BotStatus", tag = "3")]
    pub status: i32,
    #[prost(message, optional, tag = "4")]
    pub worker: Option<Worker>,
    #[prost(message, repeated, tag = "5")]
    pub leases: Vec<Lease>,
    /// When the server gives up on the bot unless it calls again.
    #[prost(message, optional, tag = "6")]
    pub expire_time: Option<Timestamp>,
    /// The server's version of the session; echoed back.
    #[prost(string, tag = "7")]
    pub version: String,
}

/// A unit of work the server hands a bot.
#[derive(Clone, PartialEq, Message)]
pub struct Lease {
    /// Deprecated by the proto; kept so an echo loses nothing.
    #[prost(string, tag = "1")]
    pub assignment: String,
    #[prost(enumeration = "LeaseState", tag = "2")]
    pub state: i32,
    /// How the work ended, with a completed lease.
    #[prost(message, optional, tag = "3")]
    pub status: Option<Status>,
    #[prost(message, optional, tag = "4")]
    pub requirements: Option<Worker>,
    #[prost(message, optional, tag = "5")]
    pub expire_time: Option<Timestamp>,
    /// Deprecated by the proto; kept so an echo loses nothing.
    #[prost(message, optional, tag = "6")]
    pub inline_assignment: Option<Any>,
    #[prost(string, tag = "7")]
    pub id: String,
    /// What to do (for REAPI, an `Action` or its `Digest`).
    #[prost(message, optional, tag = "8")]
    pub payload: Option<Any>,
    /// What came of it (for REAPI, an `ActionResult`).
    #[prost(message, optional, tag = "9")]
    pub result: Option<Any>,
}

/// What a bot can do: its devices, properties and configuration.
#[derive(Clone, PartialEq, Message)]
pub struct Worker {
    /// The first device is the one that runs commands.
    #[prost(message, repeated, tag = "1")]
    pub devices: Vec<Device>,
    #[prost(message, repeated, tag = "2")]
    pub properties: Vec<Property>,
    /// BuildGrid reads `capacity` (leases at once) and `priority` here.
    #[prost(message, repeated, tag = "3")]
    pub configs: Vec<Property>,
}

/// A device of a worker; its properties are what platforms match against.
#[derive(Clone, PartialEq, Message)]
pub struct Device {
    #[prost(string, tag = "1")]
    pub handle: String,
    #[prost(message, repeated, tag = "2")]
    pub properties: Vec<Property>,
}

/// A key and a value: `Worker.Property`, `Worker.Config` and
/// `Device.Property` alike (the same two fields).
#[derive(Clone, PartialEq, Message)]
pub struct Property {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct CreateBotSessionRequest {
    /// The instance name.
    #[prost(string, tag = "1")]
    pub parent: String,
    #[prost(message, optional, tag = "2")]
    pub bot_session: Option<BotSession>,
}

#[derive(Clone, PartialEq, Message)]
pub struct UpdateBotSessionRequest {
    /// The session's name, as the server gave it.
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub bot_session: Option<BotSession>,
    #[prost(message, optional, tag = "3")]
    pub update_mask: Option<FieldMask>,
}

/// `google.protobuf.FieldMask`.
#[derive(Clone, PartialEq, Message)]
pub struct FieldMask {
    #[prost(string, repeated, tag = "1")]
    pub paths: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, prost::Enumeration)]
#[repr(i32)]
pub enum BotStatus {
    Unspecified = 0,
    /// Healthy: the server may hand it leases.
    Ok = 1,
    Unhealthy = 2,
    HostRebooting = 3,
    /// Going away: no new leases.
    BotTerminating = 4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, prost::Enumeration)]
#[repr(i32)]
pub enum LeaseState {
    Unspecified = 0,
    /// Offered, not yet accepted.
    Pending = 1,
    /// Accepted and being worked on.
    Active = 2,
    /// Done, with a status and a result.
    Completed = 4,
    /// Withdrawn by the server.
    Cancelled = 5,
}

/// The `type_url` prefix of a packed message.
const TYPE_PREFIX: &str = "type.googleapis.com/";

/// `msg` packed into an `Any` under its full protobuf name.
pub fn pack(full_name: &str, msg: &impl Message) -> Any {
    Any {
        type_url: format!("{TYPE_PREFIX}{full_name}"),
        value: msg.encode_to_vec(),
    }
}

/// The full protobuf name of what `any` holds.
pub fn type_name(any: &Any) -> &str {
    any.type_url.rsplit('/').next().unwrap_or("")
}

/// A client of the Bots service.
#[derive(Clone)]
pub struct BotsClient {
    inner: tonic::client::Grpc<Channel>,
}

impl BotsClient {
    pub fn new(channel: Channel) -> BotsClient {
        BotsClient {
            inner: tonic::client::Grpc::new(channel),
        }
    }

    /// Starts a session; the server may hold the call until it has work.
    pub async fn create_bot_session(
        &mut self,
        req: CreateBotSessionRequest,
        timeout: Duration,
    ) -> Result<BotSession, tonic::Status> {
        self.unary(req, "CreateBotSession", timeout).await
    }

    /// Reports the session and gets the server's view back; the server may
    /// hold the call until it has work.
    pub async fn update_bot_session(
        &mut self,
        req: UpdateBotSessionRequest,
        timeout: Duration,
    ) -> Result<BotSession, tonic::Status> {
        self.unary(req, "UpdateBotSession", timeout).await
    }

    async fn unary<Req: Message + Send + 'static>(
        &mut self,
        req: Req,
        method: &'static str,
        timeout: Duration,
    ) -> Result<BotSession, tonic::Status> {
        const SERVICE: &str = "google.devtools.remoteworkers.v1test2.Bots";
        self.inner
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("Bots service not ready: {e}")))?;
        let path = format!("/{SERVICE}/{method}");
        let path = http::uri::PathAndQuery::try_from(path).expect("a valid path");
        let mut req = tonic::Request::new(req);
        req.set_timeout(timeout);
        req.extensions_mut()
            .insert(tonic::GrpcMethod::new(SERVICE, method));
        let reply = self
            .inner
            .unary(req, path, tonic_prost::ProstCodec::default())
            .await?;
        Ok(reply.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reapi::re;

    /// A BotSession as BuildGrid's Python protos serialize it: two leases
    /// (one active with an Action, one completed with a result), a device
    /// property, a capacity config, an expiry and a version.
    const PY_BOT_SESSION: &str = "0a096d61696e2f757569641204686f73741801222a0a190a04686f737412110a084f5346616d696c7912056c696e75781a0d0a0863617061636974791201342a5810021a003a0a6d61696e2f6a6f622d3142460a3a747970652e676f6f676c65617069732e636f6d2f6275696c642e62617a656c2e72656d6f74652e657865637574696f6e2e76322e416374696f6e12080a060a02616210032a6010041a08080d1204626f6f6d3a0a6d61696e2f6a6f622d324a460a40747970652e676f6f676c65617069732e636f6d2f6275696c642e62617a656c2e72656d6f74652e657865637574696f6e2e76322e416374696f6e526573756c741202200332080880e2cfaa0610053a0137";

    /// The same session in an UpdateBotSessionRequest with a field mask of
    /// `leases` and `status`.
    const PY_UPDATE: &str = "0a096d61696e2f757569641288020a096d61696e2f757569641204686f73741801222a0a190a04686f737412110a084f5346616d696c7912056c696e75781a0d0a0863617061636974791201342a5810021a003a0a6d61696e2f6a6f622d3142460a3a747970652e676f6f676c65617069732e636f6d2f6275696c642e62617a656c2e72656d6f74652e657865637574696f6e2e76322e416374696f6e12080a060a02616210032a6010041a08080d1204626f6f6d3a0a6d61696e2f6a6f622d324a460a40747970652e676f6f676c65617069732e636f6d2f6275696c642e62617a656c2e72656d6f74652e657865637574696f6e2e76322e416374696f6e526573756c741202200332080880e2cfaa0610053a01371a100a066c65617365730a06737461747573";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn property(key: &str, value: &str) -> Property {
        Property {
            key: key.into(),
            value: value.into(),
        }
    }

    fn session() -> BotSession {
        let action = re::Action {
            command_digest: Some(re::Digest {
                hash: "ab".into(),
                size_bytes: 3,
            }),
            ..Default::default()
        };
        let result = re::ActionResult {
            exit_code: 3,
            ..Default::default()
        };
        let active = Lease {
            id: "main/job-1".into(),
            state: LeaseState::Active as i32,
            payload: Some(pack("build.bazel.remote.execution.v2.Action", &action)),
            status: Some(Status::default()),
            ..Default::default()
        };
        let completed = Lease {
            id: "main/job-2".into(),
            state: LeaseState::Completed as i32,
            status: Some(Status {
                code: 13,
                message: "boom".into(),
                details: vec![],
            }),
            result: Some(pack(
                "build.bazel.remote.execution.v2.ActionResult",
                &result,
            )),
            ..Default::default()
        };
        BotSession {
            name: "main/uuid".into(),
            bot_id: "host".into(),
            status: BotStatus::Ok as i32,
            worker: Some(Worker {
                devices: vec![Device {
                    handle: "host".into(),
                    properties: vec![property("OSFamily", "linux")],
                }],
                properties: vec![],
                configs: vec![property("capacity", "4")],
            }),
            leases: vec![active, completed],
            expire_time: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            version: "7".into(),
        }
    }

    #[test]
    fn bot_session_matches_the_python_protos_both_ways() {
        let bytes = unhex(PY_BOT_SESSION);
        assert_eq!(BotSession::decode(bytes.as_slice()).unwrap(), session());
        assert_eq!(session().encode_to_vec(), bytes);
    }

    #[test]
    fn update_request_matches_the_python_protos() {
        let req = UpdateBotSessionRequest {
            name: "main/uuid".into(),
            bot_session: Some(session()),
            update_mask: Some(FieldMask {
                paths: vec!["leases".into(), "status".into()],
            }),
        };
        assert_eq!(req.encode_to_vec(), unhex(PY_UPDATE));
    }

    #[test]
    fn packed_messages_name_their_type() {
        let any = pack(
            "build.bazel.remote.execution.v2.Digest",
            &re::Digest::default(),
        );
        assert_eq!(
            any.type_url,
            "type.googleapis.com/build.bazel.remote.execution.v2.Digest"
        );
        assert_eq!(type_name(&any), "build.bazel.remote.execution.v2.Digest");
    }
}
