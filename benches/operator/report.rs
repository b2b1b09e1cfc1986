//! Rows of figures: printed as a Markdown table, written as JSON.

use serde_json::{Value, json};

/// One measured (or deliberately unmeasured) figure.
pub struct Row {
    pub what: String,
    /// The figure as printed, or "not measured yet" and why.
    pub figure: String,
    /// The target, if it sets one.
    pub target: &'static str,
    /// Whether the target is met; `None` without a target or a figure.
    pub met: Option<bool>,
    /// Machine-readable numbers for the JSON report.
    pub data: Value,
}

impl Row {
    pub fn new(what: impl Into<String>, figure: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            figure: figure.into(),
            target: "",
            met: None,
            data: json!({}),
        }
    }

    pub fn target(mut self, target: &'static str, met: bool) -> Self {
        self.target = target;
        self.met = Some(met);
        self
    }

    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }
}

pub fn print(rows: &[Row]) {
    println!("\n| what | figure | target | met |");
    println!("| --- | --- | --- | --- |");
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        println!("| {} | {} | {} | {met} |", r.what, r.figure, r.target);
    }
}

pub fn to_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({"what": r.what, "figure": r.figure, "target": r.target,
                       "met": r.met, "data": r.data})
            })
            .collect(),
    )
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub fn sorted(mut samples: Vec<f64>) -> Vec<f64> {
    samples.sort_by(f64::total_cmp);
    samples
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
