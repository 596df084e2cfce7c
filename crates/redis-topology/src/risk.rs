//! Data at risk (issue 14): what promoting a replica-mode cluster would lose while its link to
//! the source is down.
//!
//! A cut link hides the source's offset, so the loss cannot be counted, only bounded from
//! below: the pod a promotion would make primary lacked `lagBytes` of the source's stream when
//! its instance manager last read the source (`upstreamLastSeen` in its report), and the source
//! may have taken any number of writes since. The status shows both facts, the promotion's
//! Events repeat them, and the instance managers export them as metrics.

use redis_cluster_api::DataAtRisk;
use redis_cluster_api::report::InstanceReport;

/// What a promotion of `pod` would lose now, from its instance manager's report (`None`: it
/// does not answer). Call it only while the link to the source is down.
pub fn data_at_risk(pod: &str, report: Option<&InstanceReport>) -> DataAtRisk {
    let contact = report.and_then(|r| r.upstream_last_seen.as_ref());
    let message = match (report, contact) {
        (None, _) => format!(
            "{pod}'s instance manager does not answer: what a promotion now would lose cannot be counted"
        ),
        (Some(_), None) => format!(
            "{pod} has not read the source since its instance manager started: what a promotion now would lose cannot be counted"
        ),
        (Some(_), Some(c)) => {
            let at = c.at.as_deref().unwrap_or("an unknown time");
            match c.lag_bytes {
                Some(0) => format!(
                    "{pod} held everything the source had written when it last read it, at {at}: a promotion now loses every write the source accepted since"
                ),
                Some(bytes) => format!(
                    "{pod} was {bytes} bytes{} behind the source when it last read it, at {at}: a promotion now loses those writes and every write the source accepted since",
                    c.lag_seconds
                        .map(|s| format!(" ({s:.1} s of writes)"))
                        .unwrap_or_default()
                ),
                None => format!(
                    "{pod} last read the source at {at}, its own lag then unknown: a promotion now loses what it lacked then and every write the source accepted since"
                ),
            }
        }
    };
    DataAtRisk {
        pod: pod.to_string(),
        source_last_seen: contact.and_then(|c| c.at.clone()),
        lag_bytes: contact.and_then(|c| c.lag_bytes),
        lag_seconds: contact.and_then(|c| c.lag_seconds),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_cluster_api::report::UpstreamContact;

    fn with_contact(lag_bytes: Option<i64>, lag_seconds: Option<f64>) -> InstanceReport {
        InstanceReport {
            upstream_last_seen: Some(UpstreamContact {
                offset: 10_000,
                replid: "h".into(),
                lag_bytes,
                lag_seconds,
                seconds_ago: 30.0,
                at: Some("2026-11-28T05:00:00Z".into()),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn every_case_says_what_is_known_and_what_is_not() {
        let rows: [(&str, Option<InstanceReport>, &str); 5] = [
            (
                "lag known",
                Some(with_contact(Some(1500), Some(0.3))),
                "dr-0 was 1500 bytes (0.3 s of writes) behind the source when it last read it, at 2026-11-28T05:00:00Z: a promotion now loses those writes and every write the source accepted since",
            ),
            (
                "lag in bytes only",
                Some(with_contact(Some(1500), None)),
                "dr-0 was 1500 bytes behind the source when it last read it, at 2026-11-28T05:00:00Z: a promotion now loses those writes and every write the source accepted since",
            ),
            (
                "caught up then",
                Some(with_contact(Some(0), Some(0.0))),
                "dr-0 held everything the source had written when it last read it, at 2026-11-28T05:00:00Z: a promotion now loses every write the source accepted since",
            ),
            (
                "its own Redis unreadable then",
                Some(with_contact(None, None)),
                "dr-0 last read the source at 2026-11-28T05:00:00Z, its own lag then unknown: a promotion now loses what it lacked then and every write the source accepted since",
            ),
            (
                "never read",
                Some(InstanceReport::default()),
                "dr-0 has not read the source since its instance manager started: what a promotion now would lose cannot be counted",
            ),
        ];
        for (case, report, message) in rows {
            let r = data_at_risk("dr-0", report.as_ref());
            assert_eq!(r.message, message, "{case}");
            assert_eq!(r.pod, "dr-0");
            let contact = report.as_ref().and_then(|r| r.upstream_last_seen.as_ref());
            assert_eq!(r.lag_bytes, contact.and_then(|c| c.lag_bytes), "{case}");
            assert_eq!(r.lag_seconds, contact.and_then(|c| c.lag_seconds), "{case}");
            assert_eq!(
                r.source_last_seen.is_some(),
                contact.is_some(),
                "{case}: the time of the last contact, when there was one"
            );
        }
        let silent = data_at_risk("dr-0", None);
        assert_eq!(
            silent.message,
            "dr-0's instance manager does not answer: what a promotion now would lose cannot be counted"
        );
        assert_eq!((silent.source_last_seen, silent.lag_bytes), (None, None));
    }
}
