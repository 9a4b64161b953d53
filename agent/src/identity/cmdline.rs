//! A process's command line without the secrets people pass on it: values of credential flags
//! (`--password=x`, `--token x`), credential assignments (`DB_PASSWORD=x`), passwords in URLs
//! (`postgres://u:x@db`), credential parameters in URL queries (`https://h/p?api_key=x`), curl's
//! `-u user:x`, mysql's `-px`, secret headers (`-H 'Authorization: Bearer x'`) and anything shaped like a JWT.

use crate::credentials::{
    jwt,
    redact::{self, REDACTED},
};

/// Flags whose next argument is `user:password` (curl, wget).
const USER_PASSWORD_FLAGS: &[&str] = &["-u", "--user", "--proxy-user"];

/// Header names whose values are credentials.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-auth-token",
];

/// `/proc/PID/cmdline` (arguments separated by NUL) -> one line, secrets removed. `None` when
/// the process has no arguments (kernel threads, zombies).
pub fn from_proc(raw: &[u8]) -> Option<String> {
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!args.is_empty()).then(|| redact_args(&args).join(" "))
}

/// Each argument with its secrets replaced by `REDACTED`.
pub fn redact_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut next_is_secret = false;
    let mut next_is_user_password = false;
    for arg in args {
        let redacted = if next_is_secret && !arg.starts_with('-') {
            REDACTED.to_string()
        } else if next_is_user_password {
            user_password(arg)
        } else {
            redact_arg(arg)
        };
        next_is_secret = is_secret_flag(arg);
        next_is_user_password = USER_PASSWORD_FLAGS.contains(&arg.as_str());
        out.push(redacted);
    }
    out
}

/// A flag without a value (`--password`) whose next argument is the secret.
fn is_secret_flag(arg: &str) -> bool {
    arg.starts_with("--") && !arg.contains('=') && redact::is_secret_name(&arg[2..])
}

fn redact_arg(arg: &str) -> String {
    if looks_like_jwt(arg) {
        return REDACTED.to_string();
    }
    if is_glued_password(arg) {
        return format!("-p{REDACTED}");
    }
    // JSON data (`curl -d '{"user":"a","password":"x"}'`): secret-named fields' values.
    if let Some(json) = json_with_secrets_redacted(arg) {
        return json;
    }
    // Form data (`curl -d 'user=a&password=x'`): a query string without a URL.
    if arg.contains('&') && arg.contains('=') && !arg.contains([' ', '/', ':']) {
        return redact::query(arg);
    }
    // --password=x, DB_PASSWORD=x
    if let Some((name, value)) = arg.split_once('=')
        && !value.is_empty()
        && !name.contains(['/', ' ', ':'])
        && redact::is_secret_name(name.trim_start_matches('-'))
    {
        return format!("{name}={REDACTED}");
    }
    // Authorization: Bearer x (also as --header=Authorization: x)
    let (option, header) = match arg.strip_prefix("--header=") {
        Some(header) => ("--header=", header),
        None => ("", arg),
    };
    if let Some((name, value)) = header.split_once(':')
        && !value.trim().is_empty()
        && SECRET_HEADERS.contains(&name.trim().to_ascii_lowercase().as_str())
    {
        return format!("{option}{name}: {REDACTED}");
    }
    url_query(&url_path(&url_password(arg)))
}

/// A JSON object or array argument with the values of secret-named fields (`password`,
/// `token`, `api_key`, ...) replaced, at any depth; `None` for anything else.
fn json_with_secrets_redacted(arg: &str) -> Option<String> {
    if !arg.trim_start().starts_with(['{', '[']) {
        return None;
    }
    let mut value: serde_json::Value = serde_json::from_str(arg).ok()?;
    redact_json_secrets(&mut value, 0);
    Some(value.to_string())
}

fn redact_json_secrets(value: &mut serde_json::Value, depth: usize) {
    const MAX_DEPTH: usize = 32;
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        serde_json::Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if redact::is_secret_name(name) && !field.is_object() && !field.is_array() {
                    *field = serde_json::Value::from(REDACTED);
                } else {
                    redact_json_secrets(field, depth + 1);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                redact_json_secrets(item, depth + 1);
            }
        }
        _ => {}
    }
}

/// Token-like segments (what `url.path` drops) of a URL's path, in `scheme://host/path`
/// arguments; bare file paths keep theirs (store hashes, version directories).
fn url_path(arg: &str) -> String {
    let Some(scheme_end) = arg.find("://") else {
        return arg.to_string();
    };
    let after = scheme_end + 3;
    let Some(path_start) = arg[after..].find('/').map(|i| after + i) else {
        return arg.to_string();
    };
    let path_end = arg[path_start..]
        .find(['?', '#'])
        .map_or(arg.len(), |i| path_start + i);
    format!(
        "{}{}{}",
        &arg[..path_start],
        redact::path(&arg[path_start..path_end]),
        &arg[path_end..]
    )
}

/// The query of a URL (`scheme://...?q` or `/path?q`) with its credential values removed, the
/// way the calls' `url.query` is.
fn url_query(arg: &str) -> String {
    let is_url = arg.contains("://") || arg.starts_with('/');
    match arg.split_once('?') {
        Some((before, after)) if is_url => {
            let (query, fragment) = match after.split_once('#') {
                Some((query, fragment)) => (query, Some(fragment)),
                None => (after, None),
            };
            let mut out = format!("{before}?{}", redact::query(query));
            if let Some(fragment) = fragment {
                out.push('#');
                out.push_str(fragment);
            }
            out
        }
        _ => arg.to_string(),
    }
}

/// `scheme://user:password@host` -> `scheme://user:REDACTED@host`, anywhere in the argument.
fn url_password(arg: &str) -> String {
    let Some(scheme_end) = arg.find("://") else {
        return arg.to_string();
    };
    let authority_start = scheme_end + 3;
    let rest = &arg[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    match authority.rfind('@') {
        Some(at) => match authority[..at].split_once(':') {
            Some((user, _password)) => format!(
                "{}{user}:{REDACTED}{}",
                &arg[..authority_start],
                &arg[authority_start + at..]
            ),
            None => arg.to_string(),
        },
        None => arg.to_string(),
    }
}

/// `user:password` -> `user:REDACTED`.
fn user_password(arg: &str) -> String {
    match arg.split_once(':') {
        Some((user, password)) if !password.is_empty() => format!("{user}:{REDACTED}"),
        _ => arg.to_string(),
    }
}

/// A JWT, bare or after `Bearer `.
fn looks_like_jwt(arg: &str) -> bool {
    jwt::looks_like_jwt(arg.trim_start_matches("Bearer ").trim())
}

/// `-pSECRET` (mysql, mariadb, sshpass: the password glued to `-p`); a port or port mapping
/// (`-p8080`, `-p127.0.0.1:80:80`) is not one.
fn is_glued_password(arg: &str) -> bool {
    arg.strip_prefix("-p").is_some_and(|value| {
        !value.is_empty()
            && !value
                .bytes()
                .all(|b| b.is_ascii_digit() || b":./-".contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(args: &[&str]) -> String {
        let raw: Vec<u8> = args
            .iter()
            .flat_map(|a| [a.as_bytes(), b"\0"].concat())
            .collect();
        from_proc(&raw).unwrap()
    }

    #[test]
    fn keeps_ordinary_arguments() {
        assert_eq!(
            line(&[
                "python3",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "8080"
            ]),
            "python3 -m http.server --bind 127.0.0.1 8080"
        );
        assert_eq!(
            line(&["nginx", "-g", "daemon off;"]),
            "nginx -g daemon off;"
        );
        assert_eq!(
            line(&["curl", "https://example.com/a?b=c"]),
            "curl https://example.com/a?b=c"
        );
        assert_eq!(from_proc(b""), None);
    }

    /// A JSON body on the command line (`curl -d`) keeps its shape, not its secrets.
    #[test]
    fn removes_secret_fields_of_json_arguments() {
        assert_eq!(
            line(&[
                "curl",
                "-d",
                r#"{"qty":3,"auth":{"password":"hunter2","user":"ann"},"tokens":[{"api_key":"k1"}]}"#,
                "http://h/x"
            ]),
            r#"curl -d {"auth":{"password":"REDACTED","user":"ann"},"qty":3,"tokens":[{"api_key":"REDACTED"}]} http://h/x"#
        );
        assert_eq!(line(&["jq", "{a: .b}"]), "jq {a: .b}", "not JSON: kept");
    }

    #[test]
    fn removes_flag_values_and_assignments() {
        assert_eq!(
            line(&[
                "app",
                "--password=hunter2",
                "--db-token",
                "t0k",
                "--port",
                "80"
            ]),
            "app --password=REDACTED --db-token REDACTED --port 80"
        );
        assert_eq!(
            line(&["env", "DB_PASSWORD=hunter2", "API_KEY=abc", "MODE=prod"]),
            "env DB_PASSWORD=REDACTED API_KEY=REDACTED MODE=prod"
        );
        // A secret flag followed by another flag has no value to remove.
        assert_eq!(
            line(&["app", "--token", "--verbose"]),
            "app --token --verbose"
        );
    }

    #[test]
    fn removes_url_passwords_curl_users_headers_and_jwts() {
        assert_eq!(
            line(&[
                "psql",
                "postgres://admin:hunter2@db:5432/shop?sslmode=require"
            ]),
            "psql postgres://admin:REDACTED@db:5432/shop?sslmode=require"
        );
        assert_eq!(
            line(&["app", "--dsn=https://u:p%40ss@h/x"]),
            "app --dsn=https://u:REDACTED@h/x"
        );
        assert_eq!(
            line(&[
                "curl",
                "-u",
                "alice:hunter2",
                "-H",
                "Authorization: Bearer abc.def",
                "http://h/"
            ]),
            "curl -u alice:REDACTED -H Authorization: REDACTED http://h/"
        );
        assert_eq!(
            line(&["curl", "--header=Cookie: sid=abc", "--header=Accept: */*"]),
            "curl --header=Cookie: REDACTED --header=Accept: */*"
        );
        assert_eq!(
            line(&[
                "client",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
            ]),
            "client REDACTED"
        );
        assert_eq!(
            line(&["curl", "-d", "user=a&password=hunter2", "http://h/login"]),
            "curl -d user=a&password=REDACTED http://h/login"
        );
        assert_eq!(
            line(&[
                "curl",
                "https://h/reset/k3yF0rRes3tXyZ12?x=1",
                "/nix/store/0c5abcdefghijklmnopqrstu1-x"
            ]),
            "curl https://h/reset/REDACTED?x=1 /nix/store/0c5abcdefghijklmnopqrstu1-x"
        );
        assert_eq!(
            line(&["mysql", "-uroot", "-phunter2", "shop"]),
            "mysql -uroot -pREDACTED shop"
        );
        assert_eq!(
            line(&["docker", "run", "-p8080:80", "-p127.0.0.1:9000:9000", "x"]),
            "docker run -p8080:80 -p127.0.0.1:9000:9000 x"
        );
    }
}
