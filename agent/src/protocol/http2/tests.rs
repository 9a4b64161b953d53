//! Whole connections: frames as real peers write them, header blocks from an HPACK encoder.

use loona_hpack::Encoder;

use super::{
    frame::{self, tests::frame},
    *,
};

/// One side's encoder and the bytes it wrote.
struct Peer {
    encoder: Encoder<'static>,
}

impl Peer {
    fn new() -> Self {
        Self {
            encoder: Encoder::new(),
        }
    }

    fn headers(&mut self, stream: u32, flags: u8, fields: &[(&str, &str)]) -> Vec<u8> {
        let block = self
            .encoder
            .encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
        frame(frame::HEADERS, flags | frame::END_HEADERS, stream, &block)
    }
}

/// gRPC length-prefixed messages.
fn grpc_messages(messages: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.push(0);
        out.extend_from_slice(&(m.len() as u32).to_be_bytes());
        out.extend_from_slice(m);
    }
    out
}

/// Feeds (egress, bytes) chunks to a server-side connection; returns its exchanges.
fn run(conn: &mut Http2Connection, chunks: &[(bool, Vec<u8>)]) -> Vec<Exchange> {
    let stats = Stats::default();
    let mut out = Vec::new();
    for (i, (egress, bytes)) in chunks.iter().enumerate() {
        conn.on_bytes(*egress, bytes, 0, i as u64 + 1, &stats, &mut out);
    }
    out
}

fn server() -> Http2Connection {
    Http2Connection::new(Some(false), Start::Beginning, Limits::default())
}

/// Two concurrent streams, answered in the other order, the second with a body in two frames.
fn conversation() -> Vec<(bool, Vec<u8>)> {
    let (mut client, mut server) = (Peer::new(), Peer::new());
    let mut hello = frame::PREFACE.to_vec();
    hello.extend(frame(frame::SETTINGS, 0, 0, &[]));
    hello.extend(client.headers(
        1,
        frame::END_STREAM,
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "api.local"),
            (":path", "/users/1?x=1"),
            ("user-agent", "curl/7.88.1"),
        ],
    ));
    hello.extend(client.headers(
        3,
        0,
        &[
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", "api.local"),
            (":path", "/users"),
            ("content-type", "application/json"),
        ],
    ));
    hello.extend(frame(
        frame::DATA,
        frame::END_STREAM,
        3,
        b"{\"name\":\"a\"}",
    ));
    let mut answers = frame(frame::SETTINGS, 0, 0, &[]);
    answers.extend(server.headers(3, 0, &[(":status", "201")]));
    answers.extend(server.headers(1, 0, &[(":status", "200"), ("content-type", "text/plain")]));
    answers.extend(frame(frame::DATA, 0, 1, b"hello "));
    answers.extend(frame(frame::DATA, frame::END_STREAM, 1, b"world"));
    answers.extend(frame(frame::DATA, frame::END_STREAM, 3, b""));
    vec![(false, hello), (true, answers)]
}

/// Stream id, method, path, status, response body length, error.
type Summary<'a> = (
    u32,
    Option<&'a str>,
    Option<&'a str>,
    Option<u16>,
    u64,
    Option<&'a str>,
);

fn summary(exchanges: &[Exchange]) -> Vec<Summary<'_>> {
    exchanges
        .iter()
        .map(|e| {
            (
                e.stream_id,
                e.method.as_deref(),
                e.path.as_deref(),
                e.status,
                e.response_body.len,
                e.error.as_deref(),
            )
        })
        .collect()
}

#[test]
fn concurrent_streams_become_exchanges_in_the_order_they_end() {
    let exchanges = run(&mut server(), &conversation());
    assert_eq!(
        summary(&exchanges),
        [
            (1, Some("GET"), Some("/users/1?x=1"), Some(200), 11, None),
            (3, Some("POST"), Some("/users"), Some(201), 0, None)
        ]
    );
    let get = &exchanges[0];
    assert_eq!(get.authority.as_deref(), Some("api.local"));
    assert_eq!(get.response_body.sample, b"hello world");
    assert!(get.response_body.complete && get.unknown_fields == 0);
    assert_eq!(get.request_headers[0].name, "user-agent");
    assert_eq!(exchanges[1].request_body.len, 12);
    assert!(exchanges.iter().all(|e| e.grpc.is_none()));
}

#[test]
fn the_same_bytes_split_anywhere_give_the_same_exchanges() {
    let chunks = conversation();
    let whole = run(&mut server(), &chunks);
    for (which, (egress, bytes)) in chunks.iter().enumerate() {
        for split in 1..bytes.len() {
            let mut pieces = chunks.clone();
            pieces.remove(which);
            pieces.insert(which, (*egress, bytes[split..].to_vec()));
            pieces.insert(which, (*egress, bytes[..split].to_vec()));
            let got = run(&mut server(), &pieces);
            assert_eq!(
                summary(&got),
                summary(&whole),
                "chunk {which} split at {split}"
            );
        }
    }
}

#[test]
fn grpc_calls_carry_service_method_status_and_message_counts() {
    let (mut client, mut server_peer) = (Peer::new(), Peer::new());
    let request = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/demo.Echo/Collect"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ];
    let mut up = frame::PREFACE.to_vec();
    up.extend(client.headers(1, 0, &request));
    up.extend(frame(frame::DATA, 0, 1, &grpc_messages(&[b"one", b"two"])));
    let last = grpc_messages(&[b"three"]);
    let mut down = server_peer.headers(
        1,
        0,
        &[(":status", "200"), ("content-type", "application/grpc")],
    );
    down.extend(frame(frame::DATA, 0, 1, &grpc_messages(&[b"summary"])));
    down.extend(server_peer.headers(
        1,
        frame::END_STREAM,
        &[("grpc-status", "5"), ("grpc-message", "no%20such%20thing")],
    ));
    // Trailers-only: the error is in the only header block.
    let mut second = client.headers(
        3,
        frame::END_STREAM,
        &[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/demo.Echo/Get"),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
        ],
    );
    second.splice(0..0, frame(frame::DATA, frame::END_STREAM, 1, &last));
    let refused = server_peer.headers(
        3,
        frame::END_STREAM,
        &[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "16"),
        ],
    );
    let exchanges = run(
        &mut server(),
        &[(false, up), (false, second), (true, down), (true, refused)],
    );
    let grpc: Vec<_> = exchanges.iter().map(|e| e.grpc.clone().unwrap()).collect();
    assert_eq!(
        grpc[0],
        GrpcExchange {
            service: Some("demo.Echo".into()),
            method: Some("Collect".into()),
            status: Some(5),
            message: Some("no such thing".into()),
            request_messages: 3,
            response_messages: 1,
            messages_exact: true,
        }
    );
    assert_eq!(
        (
            grpc[1].method.as_deref(),
            grpc[1].status,
            grpc[1].response_messages
        ),
        (Some("Get"), Some(16), 0)
    );
    // Trailers follow the response headers.
    let names: Vec<&str> = exchanges[0]
        .response_headers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(names, ["content-type", "grpc-status", "grpc-message"]);
}

#[test]
fn resets_goaway_and_close_end_streams_with_their_reason() {
    let mut client = Peer::new();
    let get = |client: &mut Peer, id: u32| {
        client.headers(
            id,
            frame::END_STREAM,
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/slow"),
                (":authority", "a"),
            ],
        )
    };
    let mut up = frame::PREFACE.to_vec();
    for id in [1, 3, 5, 7] {
        up.extend(get(&mut client, id));
    }
    let mut conn = server();
    let mut down = frame(frame::RST_STREAM, 0, 1, &8u32.to_be_bytes());
    // The server processed up to stream 3: 5 and 7 were refused.
    down.extend(frame(frame::GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]));
    let mut exchanges = run(&mut conn, &[(false, up), (true, down)]);
    conn.on_close(9, &mut exchanges);
    let errors: Vec<(u32, &str)> = exchanges
        .iter()
        .map(|e| (e.stream_id, e.error.as_deref().unwrap()))
        .collect();
    assert_eq!(
        errors,
        [
            (1, "stream reset by the server: CANCEL"),
            (5, "refused: the server is going away (GOAWAY)"),
            (7, "refused: the server is going away (GOAWAY)"),
            (3, "connection closed before the response ended")
        ]
    );
}

#[test]
fn header_blocks_in_continuation_frames() {
    let mut client = Peer::new();
    let block = client.encoder.encode([
        (&b":method"[..], &b"GET"[..]),
        (b":path", b"/long"),
        (b"x-filler", &[b'f'; 300][..]),
    ]);
    let mut up = frame::PREFACE.to_vec();
    up.extend(frame(
        frame::HEADERS,
        frame::END_STREAM | frame::PADDED,
        1,
        &[&[2u8][..], &block[..100], &[0, 0]].concat(),
    ));
    up.extend(frame(frame::CONTINUATION, 0, 1, &block[100..200]));
    up.extend(frame(
        frame::CONTINUATION,
        frame::END_HEADERS,
        1,
        &block[200..],
    ));
    let down = Peer::new().headers(1, frame::END_STREAM, &[(":status", "204")]);
    let exchanges = run(&mut server(), &[(false, up), (true, down)]);
    assert_eq!(
        summary(&exchanges),
        [(1, Some("GET"), Some("/long"), Some(204), 0, None)]
    );
    assert_eq!(exchanges[0].request_headers[0].value, vec![b'f'; 300]);
}

#[test]
fn joining_mid_way_reports_what_is_known_and_never_misattributes() {
    // Before the agent came: requests that put entries in both tables (the encoder indexes
    // headers whose name is in no table).
    let (mut client, mut server_peer) = (Peer::new(), Peer::new());
    let old = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "api"),
        (":path", "/old"),
        ("x-tenant", "acme"),
    ];
    let _ = client.headers(1, frame::END_STREAM, &old);
    let _ = client.headers(3, frame::END_STREAM, &old);
    let _ = server_peer.headers(1, 0, &[(":status", "200"), ("x-server", "s1")]);
    // Joined now (role unknown too): stream 3's answer (its request unseen), a request that
    // reuses an old entry, one whose path is an old entry (index 62: unknown to the agent),
    // one that adds an entry and uses it.
    let answer_3 = server_peer.headers(
        3,
        frame::END_STREAM,
        &[(":status", "200"), ("x-server", "s1")],
    );
    let request_5 = client.headers(
        5,
        frame::END_STREAM,
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "api"),
            (":path", "/new"),
            ("x-tenant", "acme"),
        ],
    );
    let request_7 = frame(
        frame::HEADERS,
        frame::END_STREAM | frame::END_HEADERS,
        7,
        &[0x82, 0x86, 0x80 | 62],
    );
    let mut block = vec![0x82, 0x86, 0x84, 0x40, 5];
    block.extend_from_slice(b"x-new");
    block.push(1);
    block.push(b'1');
    block.push(0x80 | 62);
    let request_9 = frame(
        frame::HEADERS,
        frame::END_STREAM | frame::END_HEADERS,
        9,
        &block,
    );
    let answer = |server: &mut Peer, id: u32, status: &str| {
        server.headers(
            id,
            frame::END_STREAM,
            &[(":status", status), ("x-server", "s1")],
        )
    };
    let (answer_5, answer_7, answer_9) = (
        answer(&mut server_peer, 5, "404"),
        answer(&mut server_peer, 7, "200"),
        answer(&mut server_peer, 9, "204"),
    );
    let mut conn = Http2Connection::new(None, Start::Joined, Limits::default());
    let stats = Stats::default();
    let mut out = Vec::new();
    // A syscall that starts inside a frame is skipped until one starts on a frame.
    conn.on_bytes(true, &answer_3[4..], 0, 1, &stats, &mut out);
    let chunks = [
        (true, &answer_3),
        (false, &request_5),
        (false, &request_7),
        (false, &request_9),
        (true, &answer_5),
        (true, &answer_7),
        (true, &answer_9),
    ];
    for (i, (egress, bytes)) in chunks.into_iter().enumerate() {
        conn.on_bytes(egress, bytes, 0, i as u64 + 2, &stats, &mut out);
    }
    assert_eq!(conn.client_egress(), Some(false));
    assert_eq!(
        summary(&out),
        [
            (5, Some("GET"), Some("/new"), Some(404), 0, None),
            (7, Some("GET"), None, Some(200), 0, None),
            (9, Some("GET"), Some("/"), Some(204), 0, None)
        ]
    );
    // Stream 5: x-tenant and x-server were old entries: unknown, not dropped silently.
    assert_eq!(
        (out[0].authority.as_deref(), out[0].unknown_fields),
        (Some("api"), 2)
    );
    assert!(out[0].request_headers.is_empty() && out[0].response_headers.is_empty());
    assert_eq!(out[1].unknown_fields, 2);
    // Stream 9: the entry added after the join is known, twice.
    let headers: Vec<(&str, &[u8])> = out[2]
        .request_headers
        .iter()
        .map(|h| (h.name.as_str(), &h.value[..]))
        .collect();
    assert_eq!(headers, [("x-new", &b"1"[..]), ("x-new", &b"1"[..])]);
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.http2_streams_unattributed.load(Relaxed), 1);
    assert_eq!(stats.http2_resyncs.load(Relaxed), 2);
}

#[test]
fn random_bytes_and_random_holes_never_panic_and_stay_bounded() {
    let mut next = crate::test_support::xorshift(0x9e37_79b9_7f4a_7c15);
    let stats = Stats::default();
    let conversation: Vec<u8> = conversation().into_iter().flat_map(|(_, b)| b).collect();
    for case in 0..300 {
        let start = if case % 2 == 0 {
            Start::Beginning
        } else {
            Start::Joined
        };
        let mut conn = Http2Connection::new(Some(false), start, Limits::default());
        let mut out = Vec::new();
        for ts in 0..20 {
            let len = (next() % 200) as usize;
            let bytes: Vec<u8> = if case % 3 == 0 {
                (0..len).map(|_| next() as u8).collect()
            } else {
                // Real frames with random bytes flipped and random holes.
                let from = (next() as usize) % conversation.len();
                let mut piece = conversation[from..(from + len).min(conversation.len())].to_vec();
                if let Some(b) = piece.get_mut((next() as usize) % (len + 1)) {
                    *b ^= next() as u8;
                }
                piece
            };
            let missing = if next().is_multiple_of(5) {
                (next() % 70_000) as usize
            } else {
                0
            };
            conn.on_bytes(
                next().is_multiple_of(2),
                &bytes,
                missing,
                ts,
                &stats,
                &mut out,
            );
        }
        conn.on_close(99, &mut out);
        assert!(conn.in_progress() == 0 && out.len() <= MAX_STREAMS * 2);
    }
}

#[test]
fn streams_whose_end_was_lost_make_room_for_new_ones() {
    let mut client = Peer::new();
    let mut server_peer = Peer::new();
    let mut conn = server();
    let stats = Stats::default();
    let mut out = Vec::new();
    conn.on_bytes(false, frame::PREFACE, 0, 0, &stats, &mut out);
    let get = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/x"),
        (":authority", "a"),
    ];
    // Requests whose answers the capture lost, past the cap.
    for i in 0..MAX_STREAMS as u32 + 10 {
        let request = client.headers(2 * i + 1, frame::END_STREAM, &get);
        conn.on_bytes(false, &request, 0, 1, &stats, &mut out);
    }
    assert_eq!(conn.in_progress(), MAX_STREAMS);
    // The next request is answered and reported: the connection was not stuck.
    let id = 2 * (MAX_STREAMS as u32 + 10) + 1;
    conn.on_bytes(
        false,
        &client.headers(id, frame::END_STREAM, &get),
        0,
        2,
        &stats,
        &mut out,
    );
    let answer = server_peer.headers(id, frame::END_STREAM, &[(":status", "200")]);
    conn.on_bytes(true, &answer, 0, 3, &stats, &mut out);
    assert_eq!(
        summary(&out),
        [(id, Some("GET"), Some("/x"), Some(200), 0, None)]
    );
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.http2_streams_dropped.load(Relaxed), 11);
}
