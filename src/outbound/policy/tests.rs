use super::*;

const PROMETHEUS: &str = "http://prometheus.monitoring:9090";
const ALERTMANAGER: &str = "http://alertmanager.monitoring:9093";
const HOOKS: &str = "https://hooks.example/team-a/";

fn lists(prometheus: &[&str], alertmanager: &[&str], webhook: &[&str]) -> Settings {
    let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    Settings {
        prometheus: own(prometheus),
        alertmanager: own(alertmanager),
        webhook: own(webhook),
        ..Settings::default()
    }
}

fn policy(settings: &Settings) -> Policy {
    Policy::new(settings).unwrap()
}

fn shared() -> Policy {
    policy(&lists(&[PROMETHEUS], &[ALERTMANAGER], &[HOOKS]))
}

#[test]
fn a_prefix_allowed_for_one_purpose_is_not_allowed_for_another() {
    use Purpose::*;
    let policy = shared();
    let cases = [
        // (purpose, address, the URL requested or why not)
        (
            Prometheus,
            PROMETHEUS,
            Ok("http://prometheus.monitoring:9090/api/v1/query"),
        ),
        (
            Prometheus,
            "http://prometheus.monitoring:9090/",
            Ok("http://prometheus.monitoring:9090/api/v1/query"),
        ),
        (
            Alertmanager,
            ALERTMANAGER,
            Ok("http://alertmanager.monitoring:9093/api/v2/alerts"),
        ),
        (
            Webhook,
            "https://hooks.example/team-a/x?token=s",
            Ok("https://hooks.example/team-a/x?token=s"),
        ),
        // The attack of issue 24: a webhook under the Prometheus prefix.
        (
            Webhook,
            "http://prometheus.monitoring:9090/-/quit",
            Err(Refused::NotAllowed(Webhook)),
        ),
        (
            Webhook,
            "http://prometheus.monitoring:9090/api/v1/admin/tsdb/delete_series",
            Err(Refused::NotAllowed(Webhook)),
        ),
        (
            Webhook,
            "http://alertmanager.monitoring:9093/api/v2/alerts",
            Err(Refused::NotAllowed(Webhook)),
        ),
        (
            Alertmanager,
            PROMETHEUS,
            Err(Refused::NotAllowed(Alertmanager)),
        ),
        (
            Prometheus,
            ALERTMANAGER,
            Err(Refused::NotAllowed(Prometheus)),
        ),
        (
            Prometheus,
            "https://hooks.example/team-a",
            Err(Refused::NotAllowed(Prometheus)),
        ),
        (
            Webhook,
            "https://hooks.example/team-b?token=s",
            Err(Refused::NotAllowed(Webhook)),
        ),
        (Webhook, "file:///etc/passwd", Err(Refused::BadAddress)),
    ];
    for (purpose, address, want) in cases {
        let got = policy.request_url(purpose, address).map(|u| u.to_string());
        assert_eq!(got, want.map(str::to_string), "{purpose:?} {address}");
    }
}

#[test]
fn the_final_url_is_checked_and_only_the_purposes_path_is_requested() {
    use Purpose::*;
    // Prometheus behind a route prefix; the prefix's own path is allowed.
    let policy = policy(&lists(&["http://gw:80/prom"], &[], &[]));
    let cases = [
        ("http://gw/prom", Ok("http://gw/prom/api/v1/query")),
        (
            "http://gw/prom/team-a",
            Ok("http://gw/prom/team-a/api/v1/query"),
        ),
        // Dot segments resolve before the check, as the server would.
        ("http://gw/prom/..", Err(Refused::NotAllowed(Prometheus))),
        (
            "http://gw/prom/%2e%2e/admin",
            Err(Refused::NotAllowed(Prometheus)),
        ),
        ("http://gw/promx", Err(Refused::NotAllowed(Prometheus))),
        ("http://gw/prom?x=/-/quit", Err(Refused::BadAddress)),
        ("http://gw/prom#/-/quit", Err(Refused::BadAddress)),
    ];
    for (address, want) in cases {
        let got = policy
            .request_url(Prometheus, address)
            .map(|u| u.to_string());
        assert_eq!(got, want.map(str::to_string), "{address}");
    }
    // Whatever the address, a Prometheus request never ends anywhere but
    // at the query endpoint: `/-/quit` only as a path before it.
    let any = Policy::any();
    for address in [
        "http://prom:9090/-/quit",
        "http://prom:9090/-/quit/",
        "http://prom:9090/api/v1/admin/tsdb/delete_series",
    ] {
        let url = any.request_url(Prometheus, address).unwrap();
        assert!(url.path().ends_with("/api/v1/query"), "{url}");
        let url = any.request_url(Alertmanager, address).unwrap();
        assert!(url.path().ends_with("/api/v2/alerts"), "{url}");
    }
}

#[test]
fn prefixes_match_whole_hosts_ports_and_path_segments() {
    let policy = policy(&lists(
        &[],
        &[],
        &[PROMETHEUS, "https://alerts.example/team-a/"],
    ));
    let cases = [
        ("http://prometheus.monitoring:9090", true),
        ("http://prometheus.monitoring:9090/", true),
        ("http://prometheus.monitoring:9090/prom", true),
        ("http://PROMETHEUS.monitoring:9090", true),
        ("http://prometheus.monitoring:9091", false),
        ("http://prometheus.monitoring.evil:9090", false),
        ("https://prometheus.monitoring:9090", false),
        ("https://alerts.example/team-a", true),
        ("https://alerts.example/team-a/x", true),
        ("https://alerts.example/team-ab", false),
        ("https://alerts.example/", false),
        ("http://10.0.0.1:9090", false),
    ];
    for (address, ok) in cases {
        let got = policy.request_url(Purpose::Webhook, address);
        assert_eq!(got.is_ok(), ok, "{address}: {got:?}");
    }
}

#[test]
fn an_empty_list_allows_nothing_and_says_which_flag_to_set() {
    let policy = policy(&Settings::default());
    for purpose in [Purpose::Prometheus, Purpose::Alertmanager, Purpose::Webhook] {
        let refused = policy
            .request_url(purpose, "http://anything:1234/x")
            .unwrap_err();
        assert_eq!(refused, Refused::NoneAllowed(purpose));
        let text = refused.to_string();
        assert!(
            text.contains(purpose.flag()) && text.contains(purpose.helm_value()),
            "{text}"
        );
    }
    assert_eq!(
        Refused::NoneAllowed(Purpose::Prometheus).to_string(),
        "the operator may send no Prometheus queries: the admin allowed no endpoint for them (set --allowed-prometheus, Helm value outbound.allowedPrometheus, or in a single-team cluster --allow-any-endpoint, outbound.allowAny)"
    );
    assert_eq!(
        Refused::NotAllowed(Purpose::Webhook).to_string(),
        "the address is not among the endpoints the operator may send alert webhooks to (--allowed-webhook, Helm value outbound.allowedWebhooks)"
    );
}

#[test]
fn allow_any_allows_every_address_and_is_warned_about() {
    let settings = Settings {
        allow_any: true,
        ..Settings::default()
    };
    let policy = policy(&settings);
    for purpose in [Purpose::Prometheus, Purpose::Alertmanager, Purpose::Webhook] {
        assert!(
            policy
                .request_url(purpose, "http://anything:1234/x")
                .is_ok()
        );
    }
    assert!(warnings(&settings)[0].starts_with("--allow-any-endpoint"));
    assert_eq!(
        warnings(&lists(&[PROMETHEUS], &[], &[])),
        Vec::<String>::new()
    );
}

#[test]
fn the_deprecated_flag_allows_prometheus_and_alertmanager_never_webhooks() {
    let settings = Settings {
        legacy: vec![PROMETHEUS.into()],
        ..Settings::default()
    };
    let policy = policy(&settings);
    assert!(policy.request_url(Purpose::Prometheus, PROMETHEUS).is_ok());
    assert!(
        policy
            .request_url(Purpose::Alertmanager, PROMETHEUS)
            .is_ok()
    );
    assert_eq!(
        policy.request_url(Purpose::Webhook, "http://prometheus.monitoring:9090/-/quit"),
        Err(Refused::NoneAllowed(Purpose::Webhook))
    );
    assert!(warnings(&settings)[0].contains("deprecated"));
}

#[test]
fn credentials_query_fragment_and_other_schemes_are_refused_always() {
    let policy = Policy::any();
    for address in [
        "http://user:pw@prom:9090",
        "http://user@prom:9090",
        "http://prom:9090/?x=1",
        "http://prom:9090/#",
        "http://prom:9090#frag",
        "file:///etc/passwd",
        "ftp://prom",
        "prom:9090",
        "",
    ] {
        for purpose in [Purpose::Prometheus, Purpose::Alertmanager] {
            assert_eq!(
                policy.request_url(purpose, address),
                Err(Refused::BadAddress),
                "{address}"
            );
        }
    }
    for (flag, settings) in [
        ("--allowed-prometheus", lists(&["http://u:p@x"], &[], &[])),
        ("--allowed-webhook", lists(&[], &[], &["x:1"])),
    ] {
        let err = Policy::new(&settings).unwrap_err();
        assert!(err.starts_with(flag), "{err}");
    }
}

#[test]
fn tokens_go_over_https_only_unless_allowed() {
    let http = Url::parse("http://prom:9090").unwrap();
    let https = Url::parse("https://prom:9090").unwrap();
    let strict = Policy::any();
    assert_eq!(
        strict.token_allowed(&http),
        Err(Refused::TokenOverPlainHttp)
    );
    assert_eq!(strict.token_allowed(&https), Ok(()));
    let lax = policy(&Settings {
        insecure_tokens: true,
        ..Settings::default()
    });
    assert_eq!(lax.token_allowed(&http), Ok(()));
}
