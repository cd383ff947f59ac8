//! Masking what looks like a secret in a command line. Command lines are only collected when
//! asked for (`--include-cmdline`), and even then passwords, tokens and keys are replaced by
//! `***` before they reach a snapshot, a report or a log: `--password=x`, `--token x`,
//! `DB_PASSWORD=x` (environment style, as `env` and shells pass them), `user:x@` in URLs,
//! `Bearer x`, JSON Web Tokens wherever they appear, `-pPASSWORD` for MySQL's clients, `-u
//! user:password` (curl), and the same inside shell scripts (`sh -c "..."`).

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
    let program = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(args.len());
    let mut next = Next::Plain;
    for arg in args {
        out.push(match std::mem::replace(&mut next, Next::Plain) {
            Next::Secret if !arg.starts_with('-') => MASK.to_string(),
            // `curl -u user:password`, `--user user:password`: the user stays.
            Next::Credentials if !arg.starts_with('-') => match arg.split_once(':') {
                Some((user, _)) => format!("{user}:{MASK}"),
                None => arg.clone(),
            },
            _ => mask_one(&program, arg, &mut next),
        });
    }
    out
}

/// What the argument after this one is.
enum Next {
    Plain,
    Secret,
    /// `user:password`.
    Credentials,
}

/// Programs whose `-pPASSWORD` is a password glued to its flag (MySQL's clients).
const GLUED_PASSWORD: [&str; 4] = ["mysql", "mysqldump", "mysqladmin", "mariadb"];

fn mask_one(program: &str, arg: &str, next: &mut Next) -> String {
    // A shell script (`sh -c "... --password=x DB_PASSWORD=y"`, Kubernetes' usual
    // `command: [sh, -c, ...]`): each of its words is masked as an argument.
    if arg.contains(char::is_whitespace) && !arg.to_ascii_lowercase().contains("bearer ") {
        return mask_words(arg);
    }
    if GLUED_PASSWORD.contains(&program) && arg.len() > 2 && arg.starts_with("-p") {
        return format!("-p{MASK}");
    }
    if matches!(arg, "-u" | "--user" | "--proxy-user") {
        *next = Next::Credentials;
        return arg.to_string();
    }
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
        *next = Next::Secret;
        return arg.to_string();
    }
    mask_inline(arg)
}

/// The words of a shell script masked as a command line's arguments would be, the
/// whitespace between them kept; a quoted word (`--token "t k"`) is one word, its quotes
/// kept around the mask (`--token "***"`).
fn mask_words(script: &str) -> String {
    let mut words: Vec<(String, String)> = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    for c in script.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            None if c == '"' || c == '\'' => quote = Some(c),
            _ => {}
        }
        if c.is_whitespace() && quote.is_none() {
            match words.last_mut() {
                Some((w, gap)) if word.is_empty() && !w.is_empty() => gap.push(c),
                _ => {
                    words.push((std::mem::take(&mut word), c.to_string()));
                }
            }
        } else {
            word.push(c);
        }
    }
    words.push((word, String::new()));
    let bare: Vec<String> = words
        .iter()
        .map(|(w, _)| w.trim_matches(['"', '\'']).to_string())
        .collect();
    let masked = mask(&bare);
    words
        .iter()
        .zip(bare.iter().zip(masked))
        .map(|((w, gap), (b, m))| {
            let shown = if *b == m {
                w.clone()
            } else {
                w.replace(b.as_str(), &m)
            };
            format!("{shown}{gap}")
        })
        .collect()
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
        // Inside a shell script, as Kubernetes runs `command: [sh, -c, ...]`.
        assert_eq!(
            m(&[
                "sh",
                "-c",
                "exec app --password=x  DB_PASSWORD=y --token \"t k\" -v"
            ]),
            [
                "sh",
                "-c",
                "exec app --password=***  DB_PASSWORD=*** --token \"***\" -v"
            ]
        );
        assert_eq!(
            m(&["mysql", "-uroot", "-pS3cret"]),
            ["mysql", "-uroot", "-p***"]
        );
        assert_eq!(
            m(&["app", "-p8080"]),
            ["app", "-p8080"],
            "a port, not a password"
        );
        assert_eq!(
            m(&["curl", "-u", "admin:pw", "--user", "bob:pw2", "x"]),
            ["curl", "-u", "admin:***", "--user", "bob:***", "x"]
        );
        // A flag before another flag holds no value.
        assert_eq!(
            m(&["x", "--api-key", "--debug"]),
            ["x", "--api-key", "--debug"]
        );
    }
}
