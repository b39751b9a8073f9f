//! `[admin]`: the admin listener (metrics, the admin API, the console).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{Connections, Problems, Section};

/// The admin listener: metrics and the admin API. Both keys shape the
/// listener, built at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Address of the admin listener (`MOAT_ADMIN_LISTEN`). Keep it private.
    pub listen: SocketAddr,
    /// Connection limits and timeouts of the admin listener.
    pub connections: Connections,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            connections: Connections {
                max: 256,
                ..Connections::default()
            },
        }
    }
}

impl Section for Admin {
    fn problems(&self, p: &mut Problems) {
        p.within("connections", |p| self.connections.problems(p));
    }
}
