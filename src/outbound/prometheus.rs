//! Instant queries against Prometheus's HTTP API, reduced to one number.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::analysis::comparison::buckets::{MAX_BUCKETS, RawBucket};
use crate::analysis::verdict::Answer;
use crate::outbound::egress::{self, PROMETHEUS_BODY_LIMIT, RequestFailure};
use crate::outbound::endpoints::{EndpointCap, endpoint_of};
use crate::outbound::policy::{Policy, Purpose};

/// A shared HTTP client for Prometheus, held to the admin's endpoint
/// policy (`crate::outbound::policy`) and per-endpoint cap.
#[derive(Clone)]
pub struct Prometheus {
    http: reqwest::Client,
    policy: Arc<Policy>,
    endpoints: Arc<EndpointCap>,
}

impl Prometheus {
    /// `per_endpoint`: queries in flight at once to one endpoint.
    pub fn new(http: reqwest::Client, policy: Arc<Policy>, per_endpoint: usize) -> Self {
        Self {
            http,
            policy,
            endpoints: Arc::new(EndpointCap::new(per_endpoint)),
        }
    }

    /// Runs `query` at `address`; every failure is an answer, never an error
    /// of the reconcile: a metric that cannot be measured is inconclusive.
    /// What Prometheus (or whatever answers at the address) said is never
    /// repeated, only a classified failure (`egress::RequestFailure`): check
    /// messages reach status, Events and alerts.
    pub async fn query_quiet(
        &self,
        address: &str,
        query: &str,
        timeout: Duration,
        bearer_token: Option<&str>,
    ) -> Answer {
        match self.fetch(address, query, timeout, bearer_token).await {
            Ok((status, body)) => parse_quiet(status, &body),
            Err(why) => Answer::Error(format!("Prometheus: {why}")),
        }
    }

    /// Runs a histogram query that returns one series per `le` bucket.
    pub async fn query_buckets(
        &self,
        address: &str,
        query: &str,
        timeout: Duration,
        bearer_token: Option<&str>,
    ) -> Result<Vec<RawBucket>, Answer> {
        match self.fetch(address, query, timeout, bearer_token).await {
            Ok((status, body)) => parse_buckets(status, &body),
            Err(why) => Err(Answer::Error(format!("Prometheus: {why}"))),
        }
    }

    async fn fetch(
        &self,
        address: &str,
        query: &str,
        timeout: Duration,
        bearer_token: Option<&str>,
    ) -> Result<(u16, Vec<u8>), RequestFailure> {
        // The final URL (the query endpoint below the address) is what the
        // admin's Prometheus list must allow.
        let url = self.policy.request_url(Purpose::Prometheus, address)?;
        if bearer_token.is_some() {
            self.policy.token_allowed(&url)?;
        }
        let endpoint = endpoint_of(&url);
        let mut request = self
            .http
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("query={}", encode(query)));
        if let Some(token) = bearer_token {
            request = request.bearer_auth(token);
        }
        // Held until the answer is read (or the round is cancelled); the
        // timeout counts from when it is the query's turn.
        let _turn = self.endpoints.acquire(&endpoint).await;
        egress::send_capped(request, timeout, PROMETHEUS_BODY_LIMIT).await
    }
}

/// Percent-encoding for a form body.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    // Prometheus's `error` text is deliberately not decoded: whatever
    // answers at the address wrote it, and it must not reach status.
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

/// Reduces an API answer to one number, or says why it is not one.
pub fn parse(http_status: u16, body: &[u8]) -> Answer {
    let response: Response = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(_) => return Answer::Error(not_prometheus(http_status)),
    };
    if response.status != "success" {
        return Answer::Error(refused(response.error_type.as_deref(), http_status));
    }
    let Some(data) = response.data else {
        return Answer::Error("the answer has no data".into());
    };
    let sample = match data.result_type.as_str() {
        "scalar" => data.result.get(1).cloned(),
        "vector" => {
            let series = data.result.as_array().map_or(0, Vec::len);
            match series {
                0 => return Answer::NoData("the query returned no series".into()),
                1 => data
                    .result
                    .get(0)
                    .and_then(|s| s.get("value"))
                    .and_then(|v| v.get(1))
                    .cloned(),
                n => {
                    return Answer::Error(format!(
                        "the query returned {n} series; it must return one number (aggregate it, e.g. with sum())"
                    ));
                }
            }
        }
        other => {
            // Only the types Prometheus defines are named: anything else is
            // the answering server's text.
            let other = match other {
                "matrix" | "string" => other,
                _ => "result of an unknown type",
            };
            return Answer::Error(format!(
                "the query returned a {other}; it must return one number (an instant vector of one series, or a scalar)"
            ));
        }
    };
    let Some(text) = sample.as_ref().and_then(serde_json::Value::as_str) else {
        return Answer::Error("the answer's sample has no value".into());
    };
    match text.parse::<f64>() {
        Ok(v) if v.is_nan() => Answer::NoData("the value is NaN (e.g. 0/0: no traffic)".into()),
        Ok(v) if v.is_infinite() => {
            Answer::NoData(format!("the value is {text} (a division by zero)"))
        }
        Ok(v) => Answer::Value(v),
        Err(_) => Answer::Error("the answer's sample is not a number".into()),
    }
}

/// [`parse`]: a refusal or a body that is not an answer is described by
/// the operator only.
pub fn parse_quiet(http_status: u16, body: &[u8]) -> Answer {
    parse(http_status, body)
}

/// A body that does not decode as Prometheus's API: its status only.
fn not_prometheus(http_status: u16) -> String {
    format!("HTTP {http_status}, {}", RequestFailure::NotPrometheus)
}

fn refused(error_type: Option<&str>, http_status: u16) -> String {
    let kind: String = error_type
        .unwrap_or("error")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(32)
        .collect();
    format!(
        "Prometheus refused the query ({kind}, HTTP {http_status}); run it in Prometheus to see why"
    )
}

/// Reads a histogram answer: one series per `le` label. Only what the
/// operator itself can say goes into status: Prometheus's own error text is
/// not repeated (run the query in Prometheus to see it).
pub fn parse_buckets(http_status: u16, body: &[u8]) -> Result<Vec<RawBucket>, Answer> {
    let Ok(response) = serde_json::from_slice::<Response>(body) else {
        return Err(Answer::Error(not_prometheus(http_status)));
    };
    if response.status != "success" {
        return Err(Answer::Error(refused(
            response.error_type.as_deref(),
            http_status,
        )));
    }
    let Some(data) = response.data else {
        return Err(Answer::Error("the answer has no data".into()));
    };
    if data.result_type != "vector" {
        return Err(Answer::Error(format!(
            "the query returned a {}; it must return one series per le bucket, e.g. sum by (le) (...)",
            if data.result_type == "matrix" {
                "matrix"
            } else {
                "scalar or string"
            }
        )));
    }
    let series = data.result.as_array().map(Vec::as_slice).unwrap_or(&[]);
    if series.is_empty() {
        return Err(Answer::NoData("the query returned no series".into()));
    }
    if series.len() > MAX_BUCKETS {
        return Err(Answer::Error(format!(
            "the query returned {} series (at most {MAX_BUCKETS} buckets): aggregate by le only, e.g. sum by (le) (...)",
            series.len()
        )));
    }
    let mut buckets = Vec::with_capacity(series.len());
    for s in series {
        let Some(le) = s
            .get("metric")
            .and_then(|m| m.get("le"))
            .and_then(|l| l.as_str())
        else {
            return Err(Answer::Error(
                "a series has no le label: keep it, e.g. sum by (le) (...)".into(),
            ));
        };
        let count = s
            .get("value")
            .and_then(|v| v.get(1))
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse::<f64>().ok());
        let Some(count) = count else {
            return Err(Answer::Error("a bucket's sample has no number".into()));
        };
        buckets.push(RawBucket {
            le: le.to_string(),
            count,
        });
    }
    Ok(buckets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let cases: Vec<(&str, u16, &str, Answer)> = vec![
            ("one series", 200, r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.25"]}]}}"#, Answer::Value(0.25)),
            ("scalar", 200, r#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#, Answer::Value(3.0)),
            ("empty", 200, r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#, Answer::NoData("the query returned no series".into())),
            ("NaN", 200, r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#, Answer::NoData("the value is NaN (e.g. 0/0: no traffic)".into())),
            ("Inf", 200, r#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#, Answer::NoData("the value is +Inf (a division by zero)".into())),
            ("two series", 200, r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}}"#, Answer::Error("the query returned 2 series; it must return one number (aggregate it, e.g. with sum())".into())),
            ("matrix", 200, r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#, Answer::Error("the query returned a matrix; it must return one number (an instant vector of one series, or a scalar)".into())),
            ("bad query", 400, r#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#, Answer::Error("Prometheus refused the query (bad_data, HTTP 400); run it in Prometheus to see why".into())),
            ("not Prometheus", 502, "Bad Gateway", Answer::Error("HTTP 502, not a Prometheus API response".into())),
            ("HTML", 200, "<html><title>internal admin</title></html>", Answer::Error("HTTP 200, not a Prometheus API response".into())),
            ("their result type", 200, r#"{"status":"success","data":{"resultType":"<secret>","result":[]}}"#, Answer::Error("the query returned a result of an unknown type; it must return one number (an instant vector of one series, or a scalar)".into())),
            ("their sample", 200, r#"{"status":"success","data":{"resultType":"scalar","result":[1,"<secret>"]}}"#, Answer::Error("the answer's sample is not a number".into())),
        ];
        for (name, status, body, want) in cases {
            assert_eq!(parse(status, body.as_bytes()), want, "{name}");
        }
    }

    #[test]
    fn bucket_answers() {
        let ok = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"le":"0.1"},"value":[1,"3"]},{"metric":{"le":"+Inf"},"value":[1,"5.5"]}]}}"#;
        assert_eq!(
            parse_buckets(200, ok.as_bytes()),
            Ok(vec![
                RawBucket {
                    le: "0.1".into(),
                    count: 3.0
                },
                RawBucket {
                    le: "+Inf".into(),
                    count: 5.5
                },
            ])
        );
        let cases: Vec<(u16, &str, Answer)> = vec![
            (200, r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#, Answer::NoData("the query returned no series".into())),
            (200, r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"3"]}]}}"#, Answer::Error("a series has no le label: keep it, e.g. sum by (le) (...)".into())),
            (200, r#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#, Answer::Error("the query returned a scalar or string; it must return one series per le bucket, e.g. sum by (le) (...)".into())),
            // Prometheus's own error text stays out of status.
            (400, r#"{"status":"error","errorType":"bad_data","error":"parse error: <secret-ish text>"}"#, Answer::Error("Prometheus refused the query (bad_data, HTTP 400); run it in Prometheus to see why".into())),
            (502, "<html>upstream said something</html>", Answer::Error("HTTP 502, not a Prometheus API response".into())),
        ];
        for (status, body, want) in cases {
            assert_eq!(parse_buckets(status, body.as_bytes()), Err(want), "{body}");
        }
    }

    #[test]
    fn quiet_answers_keep_prometheus_words_out() {
        assert_eq!(
            parse_quiet(
                200,
                br#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#
            ),
            Answer::Value(3.0)
        );
        assert_eq!(
            parse_quiet(400, br#"{"status":"error","errorType":"bad_data","error":"parse error: <their text>"}"#),
            Answer::Error("Prometheus refused the query (bad_data, HTTP 400); run it in Prometheus to see why".into())
        );
        assert_eq!(
            parse_quiet(502, b"<html>upstream said something</html>"),
            Answer::Error("HTTP 502, not a Prometheus API response".into())
        );
    }

    #[test]
    fn queries_are_form_encoded() {
        assert_eq!(
            encode(r#"sum(x{a="b c"})"#),
            "sum%28x%7Ba%3D%22b%20c%22%7D%29"
        );
    }
}
