//! Redaction for the support bundle. Two layers, because either alone can miss: every value of
//! the Secrets the cluster references is replaced wherever it appears (when the user may read
//! them), and the places a password is known to be written (`requirepass`, `masterauth`, `AUTH`,
//! `-a`, `password=`/`"password":`) are blanked whatever their value.

pub const REDACTED: &str = "<redacted>";

/// Keywords after which the rest of the token (or line) is a password.
const LINE_KEYWORDS: [&str; 4] = ["requirepass", "masterauth", "auth-pass", "masteruser"];

/// Redact `text`. `secrets`: the referenced Secrets' values (empty values are ignored).
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    let mut values: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    // Longest first, so a value containing another is replaced whole.
    values.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for v in values {
        out = out.replace(v.as_str(), REDACTED);
    }
    out.lines().map(redact_line).collect::<Vec<_>>().join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
}

fn redact_line(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    for k in LINE_KEYWORDS {
        if let Some(i) = lower.find(k) {
            let end = i + k.len();
            // `requirepass <value>` (config), `requirepass:` is not a thing, but `CONFIG SET
            // requirepass <value>` is: blank everything after the keyword.
            if line[end..].starts_with([' ', '\t', '"']) {
                return format!("{} {REDACTED}", &line[..end]);
            }
        }
    }
    let mut line = line.to_string();
    for (key, sep) in [
        ("\"password\":", ""),
        ("password=", ""),
        ("REDISCLI_AUTH=", ""),
    ] {
        line = blank_after(&line, key, sep);
    }
    // `redis-cli -a <password>` and `AUTH <password>` (a logged command line).
    line = blank_word_after(&line, " -a ");
    blank_word_after(&line, "AUTH ")
}

/// Replace the value after `key` (up to the next `,`, `}`, space or end; a quoted value whole).
fn blank_after(line: &str, key: &str, _sep: &str) -> String {
    let lower = line.to_ascii_lowercase();
    let Some(i) = lower.find(&key.to_ascii_lowercase()) else {
        return line.to_string();
    };
    let start = i + key.len();
    let rest = &line[start..];
    let trimmed = rest.trim_start();
    let skipped = rest.len() - trimmed.len();
    let len = if let Some(q) = trimmed.strip_prefix('"') {
        // A JSON string: up to the closing quote not escaped.
        let mut end = None;
        let mut escaped = false;
        for (j, ch) in q.char_indices() {
            match ch {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(j + 2);
                    break;
                }
                _ => escaped = false,
            }
        }
        end.unwrap_or(trimmed.len())
    } else {
        trimmed
            .find([',', '}', ' ', '\t', '&', ';'])
            .unwrap_or(trimmed.len())
    };
    if len == 0 {
        return line.to_string();
    }
    let replacement = if trimmed.starts_with('"') {
        format!("\"{REDACTED}\"")
    } else {
        REDACTED.to_string()
    };
    format!(
        "{}{}{replacement}{}",
        &line[..start],
        &rest[..skipped],
        &trimmed[len..]
    )
}

fn blank_word_after(line: &str, key: &str) -> String {
    let Some(i) = line.find(key) else {
        return line.to_string();
    };
    let start = i + key.len();
    let rest = &line[start..];
    let len = rest.find([' ', '\t', '"', '\'']).unwrap_or(rest.len());
    if len == 0 || rest.starts_with(REDACTED) {
        return line.to_string();
    }
    format!("{}{REDACTED}{}", &line[..start], &rest[len..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_replaced_wherever_they_appear() {
        let s = vec![
            "s3cret".to_string(),
            "s3cret-longer".to_string(),
            String::new(),
        ];
        assert_eq!(
            redact("a s3cret-longer b s3cret c\n", &s),
            "a <redacted> b <redacted> c\n"
        );
        // An empty value redacts nothing.
        assert_eq!(redact("plain", &[String::new()]), "plain");
    }

    #[test]
    fn known_password_places_are_blanked_whatever_the_value() {
        let cases = [
            ("requirepass \"hunter2\"", "requirepass <redacted>"),
            ("masterauth hunter2", "masterauth <redacted>"),
            (
                "CONFIG SET requirepass hunter2",
                "CONFIG SET requirepass <redacted>",
            ),
            (
                "sentinel auth-pass mymaster hunter2",
                "sentinel auth-pass <redacted>",
            ),
            (
                r#"{"user":"x","password":"hun\"ter2","n":1}"#,
                r#"{"user":"x","password":"<redacted>","n":1}"#,
            ),
            ("url?password=hunter2&x=1", "url?password=<redacted>&x=1"),
            (
                "REDISCLI_AUTH=hunter2 redis-cli",
                "REDISCLI_AUTH=<redacted> redis-cli",
            ),
            ("redis-cli -a hunter2 INFO", "redis-cli -a <redacted> INFO"),
            ("AUTH hunter2", "AUTH <redacted>"),
            // Nothing to blank.
            ("role:master", "role:master"),
            ("masterauth_is_not_a_key:1", "masterauth_is_not_a_key:1"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input, &[]), want, "{input}");
            assert!(!redact(input, &[]).contains("hunter2"), "{input}");
        }
    }
}
