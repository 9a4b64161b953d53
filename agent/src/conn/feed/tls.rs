//! The TLS feed: what the records of a TLS connection tell before (or instead of) its
//! plaintext: the server name of the ClientHello, whether the client showed a certificate, and,
//! for the coverage report, that a TLS connection exists. The plaintext itself comes from the
//! TLS library probes and goes to the HTTP feeds.

use crate::{
    capture::event::{DataChunk, Direction, TlsLibrary},
    conn::table::{Connection, Protocol, Role},
    protocol::{detect, tls_hello},
    stats::Stats,
    tls::TlsObservation,
};

/// Keeps the server name of a ClientHello in `chunk` (syscall bytes), once per connection.
pub fn note_server_name(conn: &mut Connection, chunk: &DataChunk) {
    if chunk.tls.is_none()
        && conn.tls_server_name.is_none()
        && detect::tls_record_start(&chunk.payload)
        && let Some(name) = tls_hello::server_name(&chunk.payload)
    {
        conn.tls_server_name = Some(name.into());
    }
}

/// What the chunk's origin means for the connection: `Parse` its bytes, or `Skip` them
/// (records of a connection whose plaintext the probes give). The first plaintext from a TLS
/// library restarts detection on the plaintext, and is reported for the coverage report.
pub enum Origin {
    Parse,
    Skip,
}

pub fn origin(
    conn: &mut Connection,
    chunk: &DataChunk,
    stats: &Stats,
    observations: &mut Vec<TlsObservation>,
) -> Origin {
    match (chunk.tls, conn.tls) {
        (Some(library), None) => {
            // Plaintext from the TLS probes: whatever the syscalls showed was ciphertext.
            if !matches!(conn.protocol, Protocol::Tls { .. }) {
                Stats::inc(&stats.connections_tls);
            }
            Stats::inc(&stats.connections_tls_plaintext);
            conn.tls = Some(library);
            conn.protocol = Protocol::Detecting { chunks: 0 };
            observations.push(observation(conn, Some(library)));
            Origin::Parse
        }
        (None, Some(_)) => Origin::Skip,
        _ => Origin::Parse,
    }
}

/// Records of a TLS connection whose plaintext is not (yet) given: the handshake is observed,
/// and once records went both ways (a handshake, not a port probe answered with an alert) the
/// connection is reported for the coverage report.
pub fn feed(conn: &mut Connection, chunk: &DataChunk, observations: &mut Vec<TlsObservation>) {
    let Protocol::Tls { directions } = &mut conn.protocol else {
        return;
    };
    let we_are_client = match conn.role {
        Role::Client => Some(true),
        Role::Server => Some(false),
        Role::Unknown => None,
    };
    conn.handshake.get_or_insert_default().observe(
        chunk.direction == Direction::Egress,
        we_are_client,
        &chunk.payload,
        chunk.missing_len() == 0,
    );
    let before = *directions;
    *directions |= match chunk.direction {
        Direction::Egress => 1,
        Direction::Ingress => 2,
    };
    if *directions == 3 && before != 3 {
        observations.push(observation(conn, None));
    }
}

fn observation(conn: &Connection, plaintext: Option<TlsLibrary>) -> TlsObservation {
    TlsObservation {
        tgid: conn.tgid,
        comm: conn.comm.clone(),
        fd: conn.fd,
        sockets: conn.sockets,
        plaintext,
    }
}
