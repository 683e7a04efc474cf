//! Leadership among replicas that share one store: a lease whose expiry the database's clock
//! decides, and a fencing token that makes a stale leader's writes fail in the database itself.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A leader's lease, as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The replica that holds it (`--host`).
    pub host: String,
    /// The fencing token: one more than the lease before it; every write of the leader carries it.
    pub token: i64,
    /// When this leader took it.
    pub acquired_at: Timestamp,
    /// When it was last renewed.
    pub renewed_at: Timestamp,
    /// When it lapses unless renewed, by the database's clock.
    pub expires_at: Timestamp,
}

/// What asking to lead found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// The store has one writer by construction (an SQLite file, guarded by the home's daemon
    /// lock): nothing to elect or fence.
    Sole,
    /// This replica leads under `lease`; `now` is the database's clock.
    Leading {
        /// The lease, renewed or newly taken.
        lease: Lease,
        /// The database's time when it answered.
        now: Timestamp,
    },
    /// Another replica leads, or none does yet (`lease` is `None` or expired).
    Following {
        /// The lease in force, if any.
        lease: Option<Lease>,
        /// The database's time when it answered.
        now: Timestamp,
    },
}

/// The leader as any replica reports it (`status`, `/status`, `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderView {
    /// The lease, if one was ever taken.
    pub lease: Lease,
    /// The database's time when it was read: the lease's age and life are from this clock.
    pub now: Timestamp,
}

impl LeaderView {
    /// True while the lease has not lapsed.
    pub fn live(&self) -> bool {
        self.lease.expires_at > self.now
    }

    /// How long this leader has held the lease.
    pub fn age(&self) -> jiff::SignedDuration {
        self.now.duration_since(self.lease.acquired_at)
    }
}
