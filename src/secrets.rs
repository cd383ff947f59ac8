//! Masking what looks like a secret in a command line. Command lines are only collected when
//! asked for (`--include-cmdline`), and even then passwords, tokens and keys are replaced by
//! `***` before they reach a snapshot, a report or a log: `--password=x`, `--token x`,
//! `DB_PASSWORD=x` (environment style, as `env` and shells pass them), `user:x@` in URLs,
//! `Bearer x`, and JSON Web Tokens wherever they appear.

const MASK: &str = "***";

/// Words that make an option or variable name secret-bearing (compared lowercased).
const SECRET_WORDS: [&str; 11] = [
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "cred",
    "session",
    "cookie",
    "signature",
    "bearer",
];

/// The arguments with secret values masked.
pub fn mask(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut value_next = false;
    for arg in args {
        if value_next && !arg.starts_with('-') {
            out.push(MASK.to_string());
            value_next = false;
            continue;
        }
        value_next = false;
        out.push(mask_one(arg, &mut value_next));
    }
    out
}

fn mask_one(arg: &str, value_next: &mut bool) -> String {
    // `--name=value` or `NAME=value`.
    if let Some((name, value)) = arg.split_once('=') {
        let bare = name.trim_start_matches('-');
        let named_like_option = !bare.is_empty()
            && bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if named_like_option && secret_name(bare) && !value.is_empty() {
            return format!("{name}={MASK}");
        }
    }
    // `--password value`: the next argument is the secret.
    if arg.starts_with('-') && !arg.contains('=') && secret_name(arg.trim_start_matches('-')) {
        *value_next = true;
        return arg.to_string();
    }
    mask_inline(arg)
}

fn secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w))
}

/// Secrets inside one argument: URL passwords, bearer tokens, JSON Web Tokens.
fn mask_inline(arg: &str) -> String {
    let mut text = arg.to_string();
    // scheme://user:password@host
    if let Some(scheme) = text.find("://") {
        let rest = scheme + 3;
        let end = text[rest..]
            .find(['/', '?', '#'])
            .map_or(text.len(), |i| rest + i);
        if let Some(at) = text[rest..end].rfind('@').map(|i| rest + i)
            && let Some(colon) = text[rest..at].find(':').map(|i| rest + i)
        {
            text.replace_range(colon + 1..at, MASK);
        }
    }
    if let Some(i) = text.to_ascii_lowercase().find("bearer ") {
        let start = i + "bearer ".len();
        let end = text[start..]
            .find(char::is_whitespace)
            .map_or(text.len(), |j| start + j);
        if end > start {
            text.replace_range(start..end, MASK);
        }
    }
    // JSON Web Tokens: three base64url parts, the first an encoded `{"`.
    while let Some(start) = text.find("eyJ") {
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
            .map_or(text.len(), |j| start + j);
        if text[start..end].matches('.').count() < 2 {
            break;
        }
        text.replace_range(start..end, MASK);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::mask;

    fn m(args: &[&str]) -> Vec<String> {
        mask(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn masks_options_variables_urls_and_tokens() {
        assert_eq!(
            m(&[
                "app",
                "--password=hunter2",
                "--port=8080",
                "--token",
                "abc",
                "-v"
            ]),
            [
                "app",
                "--password=***",
                "--port=8080",
                "--token",
                "***",
                "-v"
            ]
        );
        assert_eq!(
            m(&[
                "env",
                "DB_PASSWORD=x",
                "AWS_SECRET_ACCESS_KEY=y",
                "HOME=/root",
                "run"
            ]),
            [
                "env",
                "DB_PASSWORD=***",
                "AWS_SECRET_ACCESS_KEY=***",
                "HOME=/root",
                "run"
            ]
        );
        assert_eq!(
            m(&[
                "curl",
                "https://admin:s3cret@db:5432/x?y=1",
                "-H",
                "Authorization: Bearer tok"
            ]),
            [
                "curl",
                "https://admin:***@db:5432/x?y=1",
                "-H",
                "Authorization: Bearer ***"
            ]
        );
        assert_eq!(
            m(&["x", "--header=eyJhbGciOiJI.eyJzdWIiOiIx.c2lnbmF0dXJl"]),
            ["x", "--header=***"]
        );
        assert_eq!(m(&["sleep", "100"]), ["sleep", "100"]);
        // A flag before another flag holds no value.
        assert_eq!(
            m(&["x", "--api-key", "--debug"]),
            ["x", "--api-key", "--debug"]
        );
    }
}
