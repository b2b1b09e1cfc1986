//! At most `per_endpoint` queries in flight to one endpoint (scheme, host
//! and port), whichever rounds and namespaces they come from: a pool of 8
//! rounds of up to 80 queries each (20 comparison gates, each asking two
//! queries for each revision) must not land on one shared Prometheus at
//! once. A query waits for its endpoint's turn (first come, first served:
//! tokio's semaphore is fair); a round cancelled meanwhile stops waiting.
//! An endpoint's entry goes when its last query ends, so addresses named
//! by specs do not accumulate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use reqwest::Url;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a query's endpoint is: scheme, host and port (with the scheme's
/// default), so `http://prom`, `http://prom:80/x` and `http://PROM/` are
/// one endpoint, and `https://prom` another.
pub fn endpoint_of(url: &Url) -> String {
    let port = url.port_or_known_default().unwrap_or(0);
    format!("{}://{}:{port}", url.scheme(), url.host_str().unwrap_or(""))
}

type Endpoints = Mutex<HashMap<String, Arc<Semaphore>>>;

/// The per-endpoint cap.
pub struct EndpointCap {
    per_endpoint: usize,
    endpoints: Arc<Endpoints>,
}

/// A query's place at its endpoint, given back when dropped.
pub struct Permit {
    endpoint: String,
    endpoints: Arc<Endpoints>,
    permit: Option<OwnedSemaphorePermit>,
}

impl EndpointCap {
    pub fn new(per_endpoint: usize) -> Self {
        Self {
            per_endpoint: per_endpoint.max(1),
            endpoints: Arc::default(),
        }
    }

    /// Waits until fewer than `per_endpoint` queries are in flight to
    /// `endpoint`, and holds a place until the permit is dropped.
    pub async fn acquire(&self, endpoint: &str) -> Permit {
        let semaphore = {
            let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
            endpoints
                .entry(endpoint.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_endpoint)))
                .clone()
        };
        // Never closed, so this only fails if it were: then the query goes
        // uncapped rather than never.
        let permit = semaphore.acquire_owned().await.ok();
        Permit {
            endpoint: endpoint.to_string(),
            endpoints: self.endpoints.clone(),
            permit,
        }
    }

    /// Endpoints with a query in flight or waiting.
    pub fn entries(&self) -> usize {
        self.endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        // Clones are made under this lock only: a count of one is the map's
        // own, so nobody holds or waits for this endpoint.
        if endpoints
            .get(&self.endpoint)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            endpoints.remove(&self.endpoint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn an_endpoint_is_scheme_host_and_port() {
        let cases = [
            ("http://prom:9090/api/v1/query", "http://prom:9090"),
            ("http://PROM:9090/prom/api/v1/query", "http://prom:9090"),
            ("http://prom/api/v1/query", "http://prom:80"),
            ("http://prom:80/x", "http://prom:80"),
            ("https://prom/api/v1/query", "https://prom:443"),
            ("http://10.0.0.1:9090/", "http://10.0.0.1:9090"),
        ];
        for (url, want) in cases {
            assert_eq!(endpoint_of(&Url::parse(url).unwrap()), want, "{url}");
        }
    }

    #[tokio::test]
    async fn at_most_the_cap_is_in_flight_per_endpoint_and_others_are_free() {
        let cap = EndpointCap::new(2);
        let a1 = cap.acquire("http://a:1").await;
        let a2 = cap.acquire("http://a:1").await;
        // A third query to `a` waits...
        let mut a3 = Box::pin(cap.acquire("http://a:1"));
        assert!((&mut a3).now_or_never().is_none(), "a third query went");
        // ...while another endpoint is not held up by `a`.
        let b1 = cap.acquire("http://b:1").now_or_never();
        assert!(b1.is_some(), "another endpoint waited");
        drop(a1);
        let a3 = a3
            .now_or_never()
            .expect("a place freed goes to the waiting");
        drop((a2, a3, b1));
        assert_eq!(cap.entries(), 0, "nothing kept for idle endpoints");
    }
}
