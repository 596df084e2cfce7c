//! The plain-text layout of `kubectl redis status` (golden files in `tests/golden/`). Colours
//! only when asked (a terminal, no `NO_COLOR`): the words carry the meaning, colour repeats it.

use k8s_openapi::jiff::Timestamp;

use crate::view::{ClusterView, PodView, bytes, seconds};

/// How text is decorated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    Color,
}

#[derive(Clone, Copy)]
enum Tone {
    Good,
    Bad,
    Warn,
    Dim,
}

impl Style {
    fn paint(self, tone: Tone, text: &str) -> String {
        if self == Style::Plain || text.is_empty() {
            return text.to_string();
        }
        let code = match tone {
            Tone::Good => "32",
            Tone::Bad => "31;1",
            Tone::Warn => "33",
            Tone::Dim => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    fn bold(self, text: &str) -> String {
        match self {
            Style::Plain => text.to_string(),
            Style::Color => format!("\x1b[1m{text}\x1b[0m"),
        }
    }
}

/// `3m ago`-style age of an RFC 3339 time, relative to `now`.
pub fn age(time: &str, now: Timestamp) -> String {
    let Ok(t) = time.parse::<Timestamp>() else {
        return String::new();
    };
    let s = (now.as_second() - t.as_second()).max(0);
    match s {
        0..=119 => format!("{s}s ago"),
        120..=7199 => format!("{}m ago", s / 60),
        7200..=172_799 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// Every cluster, one block each, separated by a blank line.
pub fn clusters(views: &[ClusterView], now: Timestamp, style: Style) -> String {
    if views.is_empty() {
        return "No RedisCluster found.\n".into();
    }
    views
        .iter()
        .map(|v| cluster(v, now, style))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn cluster(v: &ClusterView, now: Timestamp, style: Style) -> String {
    let mut out = String::new();
    let ready_tone = if v.ready == "True" {
        Tone::Good
    } else {
        Tone::Bad
    };
    out.push_str(&format!(
        "{} ({})  {}, {}\n",
        style.bold(&v.name),
        v.namespace,
        v.mode,
        style.paint(
            ready_tone,
            &format!("{}/{} ready", v.ready_instances, v.instances)
        ),
    ));
    let field = |out: &mut String, k: &str, val: String| {
        out.push_str(&format!("  {:<14}{}\n", format!("{k}:"), val));
    };
    let rm = match v.replica_mode.as_str() {
        "off" => "off (this cluster is its own primary)".to_string(),
        "promoted" => format!(
            "{} (former source: {})",
            style.paint(Tone::Warn, "promoted"),
            v.source.as_deref().unwrap_or("-")
        ),
        state => format!(
            "{} {}",
            style.paint(
                if state == "replicating" {
                    Tone::Good
                } else {
                    Tone::Warn
                },
                state
            ),
            v.source.as_deref().unwrap_or("(no source)")
        ),
    };
    field(&mut out, "Replica mode", rm);
    if let Some(l) = &v.source_link {
        let tone = match l.state.as_str() {
            "up" => Tone::Good,
            "down" => Tone::Bad,
            _ => Tone::Warn,
        };
        let since = l
            .since
            .as_deref()
            .map(|s| format!(" since {s} ({})", age(s, now)))
            .unwrap_or_default();
        field(
            &mut out,
            "Source link",
            format!("{}{since}: {}", style.paint(tone, &l.state), l.message),
        );
    }
    field(
        &mut out,
        "Primary",
        v.primary
            .clone()
            .unwrap_or_else(|| match v.replica_mode.as_str() {
                "replicating" | "demoting" | "promoting" => {
                    "none here (the source is the primary)".into()
                }
                _ => style.paint(Tone::Bad, "none"),
            }),
    );
    if let Some(r) = &v.data_at_risk {
        let tone = match r.state.as_str() {
            "none" => Tone::Good,
            "bytes" => Tone::Warn,
            _ => Tone::Bad,
        };
        field(&mut out, "Data at risk", style.paint(tone, &r.summary));
    }
    field(
        &mut out,
        "Operator",
        if v.operator.running() {
            format!(
                "{} ({})",
                style.paint(Tone::Good, "running"),
                v.operator.message
            )
        } else {
            format!(
                "{}: {}",
                style.paint(Tone::Bad, &v.operator.state),
                v.operator.message
            )
        },
    );
    out.push('\n');
    out.push_str(&pod_table(&v.pods, style));
    if !v.attention.is_empty() {
        out.push_str("\n  Needs attention:\n");
        for a in &v.attention {
            out.push_str(&format!("    {}\n", style.paint(Tone::Warn, a)));
        }
    }
    if !v.events.is_empty() {
        out.push_str("\n  Last events:\n");
        for e in &v.events {
            let tone = if e.type_ == "Warning" {
                Tone::Warn
            } else {
                Tone::Dim
            };
            let count = if e.count > 1 {
                format!(" (x{})", e.count)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "    {:<9}{} {}{count}: {}\n",
                age(&e.time, now),
                style.paint(tone, &format!("{:<8}", e.type_)),
                e.reason,
                e.message
            ));
        }
    }
    out
}

const HEADERS: [&str; 10] = [
    "POD", "ROLE", "UPSTREAM", "LINK", "LAG", "LAG(s)", "OFFSET", "RESYNCS", "FENCED", "READY",
];

fn pod_table(pods: &[PodView], style: Style) -> String {
    if pods.is_empty() {
        return "  (no instance reported yet)\n".into();
    }
    let dash = || "-".to_string();
    let rows: Vec<Vec<(String, Option<Tone>)>> = pods
        .iter()
        .map(|p| {
            let link = match p.link_up {
                Some(true) => ("up".to_string(), Some(Tone::Good)),
                Some(false) => ("down".to_string(), Some(Tone::Bad)),
                None => (dash(), None),
            };
            let resyncs = match (p.full_resyncs_served, p.partial_resyncs_served) {
                (Some(f), Some(pa)) => format!("{f} full/{pa} partial"),
                _ => dash(),
            };
            let fenced = match p.fenced {
                Some(true) => ("yes".to_string(), Some(Tone::Warn)),
                Some(false) => ("no".to_string(), None),
                None => (dash(), None),
            };
            vec![
                (p.name.clone(), None),
                (p.role.clone().unwrap_or_else(dash), None),
                (p.upstream.clone().unwrap_or_else(dash), None),
                link,
                (p.lag_bytes.map(bytes).unwrap_or_else(dash), None),
                (p.lag_seconds.map(seconds).unwrap_or_else(dash), None),
                (p.offset.map(|o| o.to_string()).unwrap_or_else(dash), None),
                (resyncs, None),
                fenced,
                if p.ready {
                    ("yes".to_string(), Some(Tone::Good))
                } else {
                    ("no".to_string(), Some(Tone::Bad))
                },
            ]
        })
        .collect();
    let mut widths: Vec<usize> = HEADERS.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, (cell, _)) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>| -> String { format!("  {}\n", cells.join("  ").trim_end()) };
    out.push_str(&line(
        HEADERS
            .iter()
            .zip(&widths)
            .map(|(h, w)| format!("{h:<w$}"))
            .collect(),
    ));
    for (row, p) in rows.iter().zip(pods) {
        out.push_str(&line(
            row.iter()
                .zip(&widths)
                .map(|((cell, tone), w)| {
                    let padded = format!("{cell:<w$}");
                    match tone {
                        // Pad first: escape codes have no width.
                        Some(t) => {
                            let trimmed = padded.trim_end();
                            let pad = &padded[trimmed.len()..];
                            format!("{}{pad}", style.paint(*t, trimmed))
                        }
                        None => padded,
                    }
                })
                .collect(),
        ));
        if let Some(e) = &p.error {
            out.push_str(&format!(
                "    {} {}\n",
                style.paint(Tone::Bad, "!"),
                e.replace('\n', " ")
            ));
        }
    }
    if pods.iter().any(|p| p.source == "status") {
        out.push_str(
            "  (rows without RESYNCS/FENCED come from status.instancesStatus: their instance \
             manager did not answer through the API server's pod proxy)\n",
        );
    }
    out
}
