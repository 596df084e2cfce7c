//! The Kubernetes downward-API annotations file: one `key="value"` per line, the value quoted
//! the way Go's `%q` (`strconv.Quote`) does it.

/// The value of annotation `key` in a downward-API annotations file, unquoted.
/// `Ok(None)`: the annotation is not there. `Err`: the line exists but is not valid Go quoting.
pub fn annotation(file: &str, key: &str) -> Result<Option<String>, String> {
    for line in file.lines() {
        let Some(rest) = line.strip_prefix(key) else {
            continue;
        };
        let Some(quoted) = rest.strip_prefix('=') else {
            continue;
        };
        return unquote_go(quoted.trim_end()).map(Some);
    }
    Ok(None)
}

/// Undo Go's `strconv.Quote`: `"..."` with `\a \b \f \n \r \t \v \\ \" \' \xHH \ooo \uHHHH
/// \UHHHHHHHH` escapes. Bytes from `\x`/octal escapes are collected and must form UTF-8.
pub fn unquote_go(s: &str) -> Result<String, String> {
    let inner = s
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or_else(|| "value is not a double-quoted string".to_string())?;
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = chars.next().ok_or("dangling backslash")?;
        let simple = match e {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            '\'' => Some(b'\''),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        let mut take_hex = |n: usize| -> Result<u32, String> {
            let digits: String = chars.by_ref().take(n).collect();
            if digits.len() != n {
                return Err(format!("short \\{e} escape"));
            }
            u32::from_str_radix(&digits, 16).map_err(|_| format!("bad \\{e} escape"))
        };
        match e {
            'x' => out.push(take_hex(2)? as u8),
            'u' | 'U' => {
                let v = take_hex(if e == 'u' { 4 } else { 8 })?;
                let c = char::from_u32(v).ok_or("escape is not a valid code point")?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let v = u32::from_str_radix(&format!("{e}{rest}"), 8)
                    .ok()
                    .filter(|v| rest.len() == 2 && *v <= 255)
                    .ok_or("bad octal escape")?;
                out.push(v as u8);
            }
            other => return Err(format!("unknown escape \\{other}")),
        }
    }
    String::from_utf8(out).map_err(|_| "value is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_annotation_among_others() {
        let file = "kubectl.kubernetes.io/restartedAt=\"2026-01-01\"\nredis.io/topology=\"{\\\"version\\\":1,\\\"cluster\\\":\\\"a\\\"}\"\nredis.io/topologyx=\"no\"";
        assert_eq!(
            annotation(file, "redis.io/topology").unwrap().as_deref(),
            Some("{\"version\":1,\"cluster\":\"a\"}")
        );
        assert_eq!(annotation(file, "missing").unwrap(), None);
        // A key that merely starts with another key does not match it.
        assert_eq!(
            annotation("redis.io/topologyx=\"1\"", "redis.io/topology").unwrap(),
            None
        );
    }

    #[test]
    fn undoes_every_go_escape() {
        assert_eq!(unquote_go(r#""a\tb\nc\\d\"e""#).unwrap(), "a\tb\nc\\d\"e");
        assert_eq!(
            unquote_go(r#""\a\b\f\r\v\'""#).unwrap(),
            "\x07\x08\x0c\r\x0b'"
        );
        assert_eq!(
            unquote_go(r#""\x41\u00e9\U0001F600\101""#).unwrap(),
            "Aé😀A"
        );
        assert_eq!(unquote_go(r#""\xc3\xa9""#).unwrap(), "é");
        assert_eq!(unquote_go("\"é plain\"").unwrap(), "é plain");
        assert!(unquote_go("noquotes").is_err());
        assert!(unquote_go(r#""\q""#).is_err());
        assert!(unquote_go(r#""\x4""#).is_err());
        assert!(unquote_go(r#""\xff""#).is_err());
        assert!(unquote_go("\"\\\"").is_err());
    }
}
