//! HTTP/1 parsing on byte fixtures: every framing case a real peer produces, split at every
//! point, cut by the capture limit, joined mid-way, and garbage.

use super::{
    exchange::{Exchange, Http1Connection, Issue},
    message::{Limits, MessageKind, ParseError},
};

/// Which side of the connection a fixture chunk travels.
#[derive(Clone, Copy)]
enum Side {
    Req,
    Resp,
}
use Side::{Req, Resp};

/// Feeds (side, bytes, bytes-not-captured) chunks; returns exchanges and issues, after close.
fn run(chunks: &[(Side, &[u8], usize)]) -> (Vec<Exchange>, Vec<Issue>) {
    run_with(chunks, Limits::default(), true)
}

fn run_with(
    chunks: &[(Side, &[u8], usize)],
    limits: Limits,
    close: bool,
) -> (Vec<Exchange>, Vec<Issue>) {
    let mut conn = Http1Connection::new(limits);
    let mut out = Vec::new();
    let mut issues = Vec::new();
    for (i, (side, bytes, missing)) in chunks.iter().enumerate() {
        let ts = (i as u64 + 1) * 10;
        match side {
            Req => conn.on_request_bytes(bytes, *missing, ts, &mut issues),
            Resp => conn.on_response_bytes(bytes, *missing, ts, &mut out, &mut issues),
        }
    }
    if close {
        conn.on_close(10_000, &mut out, &mut issues);
    }
    (out, issues)
}

/// (method, path, status) of each exchange.
fn summary(exchanges: &[Exchange]) -> Vec<(String, String, Option<u16>)> {
    exchanges
        .iter()
        .map(|e| {
            (
                e.request.method.clone(),
                e.request.path().to_string(),
                e.response.as_ref().map(|r| r.status),
            )
        })
        .collect()
}

fn call(method: &str, path: &str, status: u16) -> (String, String, Option<u16>) {
    (method.to_string(), path.to_string(), Some(status))
}

const GET: &[u8] = b"GET /users/42?x=1 HTTP/1.1\r\nHost: api\r\nUser-Agent: t\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello";

#[test]
fn simple_exchange_with_sizes_and_times() {
    let (out, issues) = run(&[(Req, GET, 0), (Resp, OK, 0)]);
    assert_eq!(summary(&out), [call("GET", "/users/42", 200)]);
    let e = &out[0];
    assert_eq!(e.request.query(), Some("x=1"));
    assert_eq!(e.response_body.len, 5);
    assert_eq!(e.response_body.sample, b"hello");
    assert!(e.response_body.complete);
    assert_eq!(e.request_wire_len, GET.len() as u64);
    assert_eq!(e.response_wire_len, OK.len() as u64);
    assert_eq!((e.start_ts, e.end_ts), (10, 20));
    assert!(issues.is_empty());
}

#[test]
fn keep_alive_connection_carries_many_calls() {
    let second = b"POST /orders HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    let created = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
    let (out, _) = run(&[
        (Req, GET, 0),
        (Resp, OK, 0),
        (Req, second, 0),
        (Resp, created, 0),
        (Req, GET, 0),
        (Resp, OK, 0),
    ]);
    assert_eq!(
        summary(&out),
        [
            call("GET", "/users/42", 200),
            call("POST", "/orders", 201),
            call("GET", "/users/42", 200)
        ]
    );
    assert_eq!(out[1].request_body.len, 3);
}

#[test]
fn pipelined_requests_pair_in_order_even_in_one_read() {
    let requests = [
        GET,
        b"GET /two HTTP/1.1\r\n\r\n".as_slice(),
        b"HEAD /three HTTP/1.1\r\n\r\n",
    ]
    .concat();
    let responses = [
        OK,
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno".as_slice(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", // HEAD: no body despite the length
    ]
    .concat();
    let (out, issues) = run(&[(Req, &requests, 0), (Resp, &responses, 0)]);
    assert_eq!(
        summary(&out),
        [
            call("GET", "/users/42", 200),
            call("GET", "/two", 404),
            call("HEAD", "/three", 200)
        ]
    );
    assert_eq!(out[2].response_body.len, 0);
    assert!(issues.is_empty(), "{issues:?}");
}

#[test]
fn every_split_point_gives_the_same_calls() {
    let request = b"POST /api/items?debug=true HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n";
    let response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let (whole, _) = run(&[(Req, request, 0), (Resp, response, 0)]);
    assert_eq!(summary(&whole), [call("POST", "/api/items", 200)]);
    assert_eq!(whole[0].request_body.len, 9);
    assert_eq!(whole[0].request_body.sample, b"Wikipedia");
    assert_eq!(whole[0].response_body.sample, b"abc");
    for split in 1..request.len() {
        let (a, b) = request.split_at(split);
        for rsplit in [1, response.len() / 2, response.len() - 1] {
            let (c, d) = response.split_at(rsplit);
            let (out, issues) = run(&[(Req, a, 0), (Req, b, 0), (Resp, c, 0), (Resp, d, 0)]);
            assert_eq!(summary(&out), summary(&whole), "split at {split}/{rsplit}");
            assert_eq!(
                out[0].request_body, whole[0].request_body,
                "split at {split}"
            );
            assert!(issues.is_empty(), "split at {split}: {issues:?}");
        }
    }
}

#[test]
fn byte_by_byte_delivery() {
    let mut chunks: Vec<(Side, &[u8], usize)> = GET.chunks(1).map(|b| (Req, b, 0)).collect();
    chunks.extend(OK.chunks(1).map(|b| (Resp, b, 0)));
    let (out, issues) = run(&chunks);
    assert_eq!(summary(&out), [call("GET", "/users/42", 200)]);
    assert!(issues.is_empty());
}

#[test]
fn bodies_cut_by_the_capture_limit_keep_framing() {
    // 10 000-byte body of which the probe copied 100: the rest is a gap; the next call parses.
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n";
    let first = [head.as_slice(), &[b'z'; 100]].concat();
    let (out, issues) = run(&[
        (Req, GET, 0),
        (Resp, &first, 9_900),
        (Req, GET, 0),
        (Resp, OK, 0),
    ]);
    assert_eq!(
        summary(&out),
        [call("GET", "/users/42", 200), call("GET", "/users/42", 200)]
    );
    assert_eq!(out[0].response_body.len, 10_000);
    assert!(!out[0].response_body.complete);
    assert!(out[1].response_body.complete);
    assert!(issues.is_empty());
}

#[test]
fn chunked_bodies_cut_by_the_capture_limit_at_chunk_ends() {
    // A writer sending each chunk in one syscall: the gap covers the rest of the data and CRLF.
    let req = b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let chunk = [b"2710\r\n".as_slice(), &[b'x'; 100]].concat(); // 0x2710 = 10000
    let (out, issues) = run(&[
        (Req, req, 0),
        (Req, &chunk, 10_000 - 100 + 2),
        (Req, b"0\r\n\r\n", 0),
        (Resp, b"HTTP/1.1 204 No Content\r\n\r\n", 0),
    ]);
    assert_eq!(summary(&out), [call("POST", "/up", 204)]);
    assert_eq!(out[0].request_body.len, 10_000);
    assert!(issues.is_empty(), "{issues:?}");
    // The same with the last chunk in the same syscall.
    let (out, issues) = run(&[
        (Req, req, 0),
        (Req, &chunk, 10_000 - 100 + 2 + 5),
        (Resp, b"HTTP/1.1 204 No Content\r\n\r\n", 0),
    ]);
    assert_eq!(summary(&out), [call("POST", "/up", 204)]);
    assert!(issues.is_empty(), "{issues:?}");
}

#[test]
fn head_1xx_204_304_have_no_body() {
    let (out, issues) = run(&[
        (
            Req,
            b"PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
            0,
        ),
        (Resp, b"HTTP/1.1 100 Continue\r\n\r\n", 0),
        (Req, b"ok", 0),
        (
            Resp,
            b"HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n",
            0,
        ),
        (
            Req,
            b"GET /cached HTTP/1.1\r\nIf-None-Match: \"x\"\r\n\r\n",
            0,
        ),
        (
            Resp,
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
            0,
        ),
        (Req, b"HEAD /h HTTP/1.1\r\n\r\n", 0),
        (
            Resp,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            0,
        ),
        (Req, GET, 0),
        (Resp, OK, 0),
    ]);
    assert_eq!(
        summary(&out),
        [
            call("PUT", "/f", 204),
            call("GET", "/cached", 304),
            call("HEAD", "/h", 200),
            call("GET", "/users/42", 200)
        ]
    );
    assert_eq!(out[0].request_body.len, 2);
    assert!(issues.is_empty(), "{issues:?}");
}

#[test]
fn connection_close_delimits_http10_bodies() {
    let (out, _) = run(&[
        (Req, b"GET /old HTTP/1.0\r\n\r\n", 0),
        (Resp, b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\npart one,", 0),
        (Resp, b" part two", 0),
    ]);
    assert_eq!(summary(&out), [call("GET", "/old", 200)]);
    assert_eq!(out[0].response_body.len, 18);
    assert_eq!(out[0].end_ts, 10_000);
    assert_eq!(out[0].request.minor_version, 0);
}

#[test]
fn a_request_without_response_is_reported_at_close() {
    let (out, _) = run(&[(Req, GET, 0)]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].response, None);
    assert_eq!(out[0].error, Some("connection closed before a response"));
}

#[test]
fn a_request_cut_by_close_is_not_a_call() {
    let (out, issues) = run(&[(
        Req,
        b"POST /cut HTTP/1.1\r\nContent-Length: 100\r\n\r\npartial",
        0,
    )]);
    assert!(out.is_empty(), "{out:?}");
    assert!(issues.contains(&Issue::Parse(MessageKind::Request, ParseError::Truncated)));
    let (out, issues) = run(&[(Req, b"GET /half HTTP/1.1\r\nHost: x\r\n", 0)]);
    assert!(out.is_empty());
    assert!(issues.contains(&Issue::Parse(MessageKind::Request, ParseError::Truncated)));
}

#[test]
fn joining_mid_stream_skips_to_the_next_message() {
    // The agent starts in the middle of a response body and then of a request.
    let (out, issues) = run(&[
        (Resp, b"tail of an earlier body", 0),
        (Req, b"ders of a request we missed\r\n\r\n", 0),
        (Req, GET, 0),
        (Resp, OK, 0),
    ]);
    assert_eq!(summary(&out), [call("GET", "/users/42", 200)]);
    assert!(
        issues
            .iter()
            .all(|i| matches!(i, Issue::Parse(_, ParseError::NotHttp))),
        "{issues:?}"
    );
}

#[test]
fn a_response_whose_request_was_missed_is_counted_not_invented() {
    let (out, issues) = run(&[(Resp, OK, 0), (Req, GET, 0), (Resp, OK, 0)]);
    assert_eq!(summary(&out), [call("GET", "/users/42", 200)]);
    assert_eq!(issues, [Issue::UnpairedResponse]);
}

#[test]
fn garbage_is_rejected_and_the_stream_recovers() {
    let mut next = crate::test_support::xorshift(0x9e37_79b9_7f4a_7c15);
    let noise: Vec<u8> = (0..70_000).map(|_| next() as u8).collect();
    let (out, issues) = run(&[
        (Req, &noise, 0),
        (Resp, &noise, 0),
        (Req, GET, 0),
        (Resp, OK, 0),
    ]);
    assert_eq!(summary(&out), [call("GET", "/users/42", 200)]);
    assert!(!issues.is_empty());
}

#[test]
fn oversized_heads_are_dropped_with_bounded_memory() {
    let limits = Limits {
        max_head_bytes: 1024,
        body_sample_bytes: 16,
    };
    let mut big = b"GET /big HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 1 << 20));
    big.extend_from_slice(b"\r\n\r\n");
    let chunks: Vec<(Side, &[u8], usize)> = big.chunks(8192).map(|c| (Req, c, 0)).collect();
    let mut all = chunks.clone();
    all.push((Req, GET, 0));
    all.push((
        Resp,
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n",
        0,
    ));
    all.push((Resp, OK, 0));
    let (out, issues) = run_with(&all, limits, true);
    // The 431 answers the request we could not parse: it is not given to the next request.
    assert_eq!(summary(&out), [call("GET", "/users/42", 200)]);
    assert!(issues.contains(&Issue::Parse(
        MessageKind::Request,
        ParseError::HeadTooLarge
    )));
}

#[test]
fn invalid_content_length_is_an_error_not_a_guess() {
    let (out, issues) = run(&[
        (Req, GET, 0),
        (
            Resp,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            0,
        ),
    ]);
    assert_eq!(summary(&out), [call("GET", "/users/42", 200)]);
    assert!(!out[0].response_body.complete);
    assert!(issues.iter().any(|i| matches!(
        i,
        Issue::Parse(MessageKind::Response, ParseError::InvalidHead(_))
    )));
}

#[test]
fn upgrades_stop_http_parsing() {
    let (out, issues) = run(&[
        (
            Req,
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            0,
        ),
        (
            Resp,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            0,
        ),
        (Req, b"\x81\x85binary websocket frames", 0),
        (Resp, b"\x81\x05hello", 0),
    ]);
    assert_eq!(summary(&out), [call("GET", "/ws", 101)]);
    assert!(issues.is_empty(), "{issues:?}");
}

#[test]
fn random_splits_of_random_traffic_never_panic() {
    let mut next = crate::test_support::xorshift(42);
    let pieces: [&[u8]; 6] = [
        GET,
        OK,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5\r\nab",
        b"\r\n\r\n",
        b"\x00\xff garbage",
    ];
    for _ in 0..500 {
        let mut conn = Http1Connection::new(Limits::default());
        let (mut out, mut issues) = (Vec::new(), Vec::new());
        for ts in 0..40 {
            let piece = pieces[(next() % pieces.len() as u64) as usize];
            let cut = (next() % (piece.len() as u64 + 1)) as usize;
            let missing = (next() % 4) as usize * (next() % 2) as usize;
            if next().is_multiple_of(2) {
                conn.on_request_bytes(&piece[..cut], missing, ts, &mut issues);
            } else {
                conn.on_response_bytes(&piece[cut..], missing, ts, &mut out, &mut issues);
            }
        }
        conn.on_close(1_000, &mut out, &mut issues);
    }
}

#[test]
fn an_unparsable_response_is_not_given_to_the_next_request() {
    let (out, _) = run(&[
        (Req, GET, 0),
        (Req, b"GET /second HTTP/1.1\r\n\r\n", 0),
        (Resp, b"HTTP/1.1 200 OK\r\nBad Header Line\r\n\r\n", 0),
        (
            Resp,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            0,
        ),
    ]);
    assert_eq!(summary(&out), [call("GET", "/second", 404)]);
}

#[test]
fn requests_without_responses_stay_bounded() {
    let mut conn = Http1Connection::new(Limits::default());
    let mut issues = Vec::new();
    for ts in 0..1000 {
        conn.on_request_bytes(GET, 0, ts, &mut issues);
    }
    assert!(conn.in_progress() <= 64, "{}", conn.in_progress());
    assert_eq!(
        issues
            .iter()
            .filter(|i| **i == Issue::TooManyPending)
            .count(),
        1000 - 64
    );
}
