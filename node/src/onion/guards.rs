//! The client's guard set on disk: [`warren_protocol::onion::guard::GuardSet`] kept in
//! `DIR/onion-guards.json` (written atomically, mode 0600, whenever it changes), so every circuit
//! this node builds starts at one of the same few long-lived, well-scored, diverse gates across
//! restarts.

use std::path::{Path, PathBuf};

use libp2p::PeerId;
use tracing::{info, warn};
use warren_protocol::Role;
use warren_protocol::netgroup::NetGroup;
use warren_protocol::onion::guard::{GuardCandidate, GuardFile, GuardSet};
use warren_protocol::onion::path::Candidate;

/// File name of the guard set in the data directory.
pub(crate) const GUARD_FILE: &str = "onion-guards.json";

/// The guard set and where it is stored (`None`: a node without a data directory).
pub(super) struct Guards {
    set: GuardSet,
    file: Option<PathBuf>,
}

impl Guards {
    /// The set stored in `dir`, or an empty one (a missing or unreadable file starts afresh).
    pub(super) fn load(dir: Option<&Path>) -> Self {
        let file = dir.map(|d| d.join(GUARD_FILE));
        let set = match &file {
            Some(path) if path.exists() => match std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<GuardFile>(&b).map_err(|e| e.to_string()))
            {
                Ok(f) => {
                    let set = GuardSet::from_file(f);
                    info!(guards = set.guards().len(), "onion guard set loaded");
                    set
                }
                Err(e) => {
                    warn!("onion guard set unreadable, starting afresh: {e}");
                    GuardSet::new()
                }
            },
            _ => GuardSet::new(),
        };
        Self { set, file }
    }

    /// Updates the set from the gate candidates seen at `now` (never `own`) and answers the guard
    /// to start the next circuit at, if one of them is usable.
    pub(super) fn choose(
        &mut self,
        own: &PeerId,
        candidates: &[Candidate],
        now: u64,
        seed: u64,
    ) -> Option<PeerId> {
        let gates: Vec<GuardCandidate> = candidates
            .iter()
            .filter(|c| c.peer != *own && c.roles.contains(&Role::Gate))
            .map(|c| GuardCandidate {
                peer: c.peer,
                group: c.ip.map(NetGroup::of),
                score: c.score,
            })
            .collect();
        if self.set.update(now, &gates, seed) {
            self.save();
        }
        self.set.pick(|p| gates.iter().any(|g| g.peer == *p))
    }

    fn save(&self) {
        let Some(path) = &self.file else { return };
        let result = serde_json::to_vec(&self.set.to_file())
            .map_err(|e| e.to_string())
            .and_then(|b| crate::keystore::write_private(path, &b).map_err(|e| e.to_string()));
        if let Err(e) = result {
            warn!("cannot store the onion guard set: {e}");
        }
    }
}
