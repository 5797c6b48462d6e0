//! The cloneable handle services use to reach the swarm: bounded commands, each with a oneshot
//! reply (as rust-libp2p's file-sharing example).

use libp2p::request_response::{self};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use warren_protocol::block_transfer::{self};
use warren_protocol::mesh_models::MeshModel;
use warren_protocol::onion::path::Candidate as OnionCandidate;
use warren_protocol::{ContentId, NodeRecord};
use warren_storage_mesh::placement::Candidate;

use crate::error::NodeError;
use crate::net::event_loop::names::NameAnswer;
use crate::net::protocols::blocks;
use crate::view::{PeerInfo, RecordView, StatusInfo};

/// Capacity of the command channel: callers wait when the loop is this far behind.
pub(super) const COMMAND_QUEUE: usize = 64;

/// A request from the API (or a test) to the event loop.
#[derive(Debug)]
pub(crate) enum Command {
    Status {
        reply: oneshot::Sender<StatusInfo>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    FindRecord {
        peer: PeerId,
        reply: oneshot::Sender<Result<RecordView, NodeError>>,
    },
    SendBlocks {
        peer: PeerId,
        request: blocks::Encoded,
        reply: oneshot::Sender<Result<blocks::Encoded, request_response::OutboundFailure>>,
    },
    Respond {
        peer: PeerId,
        channel: request_response::ResponseChannel<blocks::Encoded>,
        response: blocks::Encoded,
        provide: Option<ContentId>,
        /// The request did not decode (counted against the peer).
        invalid: bool,
    },
    Providers {
        block: ContentId,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Provide {
        blocks: Vec<ContentId>,
    },
    Unprovide {
        blocks: Vec<ContentId>,
    },
    Candidates {
        reply: oneshot::Sender<(PeerId, Vec<Candidate>)>,
    },
    Publish {
        topic: &'static str,
        data: Vec<u8>,
    },
    Dial {
        addr: Multiaddr,
        reply: DialReply,
    },
    OnionCandidates {
        reply: oneshot::Sender<(PeerId, Vec<OnionCandidate>)>,
    },
    KnownRecords {
        peers: Vec<PeerId>,
        reply: oneshot::Sender<Vec<NodeRecord>>,
    },
    MeshModels {
        reply: oneshot::Sender<Vec<MeshModel>>,
    },
    PutName {
        name: PeerId,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<usize, NodeError>>,
    },
    GetName {
        name: PeerId,
        reply: oneshot::Sender<Vec<NameAnswer>>,
    },
}

/// A cloneable handle that sends commands to the running event loop.
#[derive(Clone)]
pub struct Client {
    pub(super) tx: mpsc::Sender<Command>,
    pub(super) control: libp2p_stream::Control,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        rx.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// This node's status.
    pub async fn status(&self) -> Result<StatusInfo, NodeError> {
        self.ask(|reply| Command::Status { reply }).await
    }

    /// The peers this node is connected to.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NodeError> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    /// Sends one `/warren/blocks/2.0.0` request and waits for the answer, checked against the
    /// request: a carried block hashes to its id and the answer is one the request allows.
    pub async fn blocks(
        &self,
        peer: PeerId,
        request: block_transfer::Request,
    ) -> Result<block_transfer::Response, BlockError> {
        let encoded = request
            .encode()
            .map_err(|source| BlockError::Encode { peer, source })?;
        let raw = self
            .ask(|reply| Command::SendBlocks {
                peer,
                request: encoded,
                reply,
            })
            .await
            .map_err(|_| BlockError::ShuttingDown)?
            .map_err(|source| BlockError::Unreachable { peer, source })?;
        // Decoding hashes a carried block against its id: off the runtime's workers.
        let response = tokio::task::spawn_blocking(move || block_transfer::Response::decode(&raw))
            .await
            .map_err(|source| BlockError::Task { peer, source })?
            .map_err(|source| BlockError::Malformed { peer, source })?;
        response
            .check_answers(&request)
            .map_err(|source| BlockError::Mismatched { peer, source })?;
        Ok(response)
    }

    /// The peers announcing `block` in the DHT (provider records).
    pub async fn providers(&self, block: ContentId) -> Result<Vec<PeerId>, NodeError> {
        self.ask(|reply| Command::Providers { block, reply }).await
    }

    /// Sends the answer to an inbound block request ([`crate::net::InboundBlocks`]), from a
    /// blocking thread; `provide` is a block to announce, `invalid` counts against the peer.
    pub fn respond_blocks_blocking(
        &self,
        peer: PeerId,
        channel: request_response::ResponseChannel<blocks::Encoded>,
        response: blocks::Encoded,
        provide: Option<ContentId>,
        invalid: bool,
    ) {
        let _ = self.tx.blocking_send(Command::Respond {
            peer,
            channel,
            response,
            provide,
            invalid,
        });
    }

    /// Publishes `data` on the gossipsub `topic`.
    pub async fn publish(&self, topic: &'static str, data: Vec<u8>) -> Result<(), NodeError> {
        self.tx
            .send(Command::Publish { topic, data })
            .await
            .map_err(|_| NodeError::ShuttingDown)
    }

    /// Announces this node as a provider of `blocks`.
    pub async fn provide(&self, blocks: Vec<ContentId>) -> Result<(), NodeError> {
        self.tx
            .send(Command::Provide { blocks })
            .await
            .map_err(|_| NodeError::ShuttingDown)
    }

    /// Stops announcing this node as a provider of `blocks` (replicas it released).
    pub async fn unprovide(&self, blocks: Vec<ContentId>) -> Result<(), NodeError> {
        self.tx
            .send(Command::Unprovide { blocks })
            .await
            .map_err(|_| NodeError::ShuttingDown)
    }

    /// This node's peer id, and the connected peers offering storage (from their verified
    /// records), as placement candidates.
    pub async fn candidates(&self) -> Result<(PeerId, Vec<Candidate>), NodeError> {
        self.ask(|reply| Command::Candidates { reply }).await
    }

    /// Dials `addr` (ending in `/p2p/PEER_ID`, possibly through a relay's `/p2p-circuit`) and waits
    /// for the connection; answers the peer and the address connected to.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(PeerId, Multiaddr), NodeError> {
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    /// A handle that opens and accepts raw streams (onion links, inference jobs) without the loop.
    pub fn stream_control(&self) -> libp2p_stream::Control {
        self.control.clone()
    }

    /// This node's peer id, and the connected peers whose verified records offer an onion role,
    /// as path candidates.
    pub async fn onion_candidates(&self) -> Result<(PeerId, Vec<OnionCandidate>), NodeError> {
        self.ask(|reply| Command::OnionCandidates { reply }).await
    }

    /// The verified node records this node already holds (from gossip and the DHT) of `peers`;
    /// a peer whose record is not known is left out. No network query.
    pub async fn known_records(&self, peers: Vec<PeerId>) -> Result<Vec<NodeRecord>, NodeError> {
        self.ask(|reply| Command::KnownRecords { peers, reply })
            .await
    }

    /// The models the operators whose records this node holds say they serve
    /// (`warren_protocol::mesh_models::merge`: validated, at most `MAX_MESH_MODELS`, those with a
    /// connected operator first). No network query.
    pub async fn mesh_models(&self) -> Result<Vec<MeshModel>, NodeError> {
        self.ask(|reply| Command::MeshModels { reply }).await
    }

    /// Stores a signed record of `name` (`spec/names.md`; it must verify) here and on the peers
    /// closest to the name; answers with how many of those took it.
    pub async fn put_name(&self, name: PeerId, bytes: Vec<u8>) -> Result<usize, NodeError> {
        self.ask(|reply| Command::PutName { name, bytes, reply })
            .await?
    }

    /// Every record of `name` a DHT lookup finds (this node's store and the closest peers), not
    /// yet verified: see `warren_protocol::name` for which one wins.
    pub async fn get_name(&self, name: PeerId) -> Result<Vec<NameAnswer>, NodeError> {
        self.ask(|reply| Command::GetName { name, reply }).await
    }

    /// Finds `peer`'s node record in the DHT and verifies it.
    pub async fn find_record(&self, peer: PeerId) -> Result<RecordView, NodeError> {
        self.ask(|reply| Command::FindRecord { peer, reply })
            .await?
    }
}

/// Answers a [`Command::Dial`]: the peer and the address connected to.
pub(crate) type DialReply = oneshot::Sender<Result<(PeerId, Multiaddr), NodeError>>;

/// Why a block request got no usable answer. [`BlockError::is_peer_fault`] tells the answers that
/// are the peer's fault (a malformed message, a block that fails its hash, an answer to another
/// request) from those that are not (unreachable, timed out, this node stopping).
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The request could not be encoded (this node's fault).
    #[error("block request to {peer} not encoded: {source}")]
    Encode {
        /// The peer it was for.
        peer: PeerId,
        /// Why.
        #[source]
        source: warren_protocol::block_transfer::TransferError,
    },
    /// No answer came: the peer could not be reached, refused the protocol, or timed out.
    #[error("{peer}: {source}")]
    Unreachable {
        /// The peer asked.
        peer: PeerId,
        /// libp2p's reason.
        #[source]
        source: request_response::OutboundFailure,
    },
    /// The answer did not decode, or a block in it did not hash to its id.
    #[error("{peer} answered with a bad message: {source}")]
    Malformed {
        /// The peer that answered.
        peer: PeerId,
        /// What was wrong.
        #[source]
        source: warren_protocol::block_transfer::TransferError,
    },
    /// The answer decoded but does not answer the request (another block, another kind).
    #[error("{peer} answered another request: {source}")]
    Mismatched {
        /// The peer that answered.
        peer: PeerId,
        /// What did not match.
        #[source]
        source: warren_protocol::block_transfer::TransferError,
    },
    /// Decoding the answer was cut short.
    #[error("decoding the answer of {peer}: {source}")]
    Task {
        /// The peer that answered.
        peer: PeerId,
        /// Why the decoding task ended.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The event loop is gone.
    #[error("the node is shutting down")]
    ShuttingDown,
}

impl BlockError {
    /// The peer the request went to (none when this node is stopping).
    pub fn peer(&self) -> Option<PeerId> {
        match self {
            BlockError::Encode { peer, .. }
            | BlockError::Unreachable { peer, .. }
            | BlockError::Malformed { peer, .. }
            | BlockError::Mismatched { peer, .. }
            | BlockError::Task { peer, .. } => Some(*peer),
            BlockError::ShuttingDown => None,
        }
    }

    /// Whether the peer sent something it must not: a message that does not decode, a block that
    /// fails its hash, or an answer to a request that was not asked. Such a peer is observed as
    /// sending an invalid message.
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            BlockError::Malformed { .. } | BlockError::Mismatched { .. }
        )
    }

    /// Whether the request timed out (the peer may be slow or gone, not wrong).
    pub fn timed_out(&self) -> bool {
        matches!(
            self,
            BlockError::Unreachable {
                source: request_response::OutboundFailure::Timeout,
                ..
            }
        )
    }
}
