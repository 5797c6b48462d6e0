//! Every JSON body the control API speaks, shared by the server, the CLI client and the services
//! that fill them: the network ([`net`]), files and storage ([`files`]) and the dashboard
//! ([`dashboard`]).
//!
//! A leaf: these are plain data types (serde), so any layer may build or read them and none of
//! them imports a service.

pub mod dashboard;
pub mod files;
pub mod names;
pub mod net;

pub use dashboard::{
    Activity, ActivityView, BackgroundView, CircuitView, DashboardView, HeldBlock, JobView,
    StorageView,
};
pub use files::{
    AuditRecord, BlockHolders, DirEntryView, GcView, HolderView, LeaseView, LsView, PiecesHealth,
    PiecesReport, PinView, PutDirRequest, PutView, ReplicationReport, StatView, StorageUsage,
    StripeHealth, WhereReport,
};
pub use names::{NameAnswerView, NameKeyView, PublishNameRequest, PublishedView, ResolvedView};
pub use net::{NatView, PeerInfo, RecordView, StatusInfo};
