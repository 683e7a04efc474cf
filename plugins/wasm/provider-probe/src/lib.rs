//! provider-probe: defer with `provider-unreachable` unless an HTTP GET answers 2xx in time.
//!
//! ```yaml
//! - use: provider-probe
//!   with: { url: "http://127.0.0.1:11434/api/tags", timeout: 3s }
//! ```
//!
//! Connection refused, a timeout, or a status outside 2xx all defer. The probe is made once per
//! evaluation pass however many lanes ask. The same semantics and wording as
//! plugins/provider-probe.rhai.

use lanekeeper_plugin::{Context, Number, Verdict, export, fmt_duration, http_get};

export!(evaluate: evaluate, params: &[("url", "url"), ("timeout", "duration?")]);

/// The gate.
pub fn evaluate(ctx: &Context) -> Result<Verdict, String> {
    let p = ctx.params();
    let url = p.str("url").ok_or("parameter `url` is missing")?;
    let timeout = p.int("timeout").unwrap_or(3000);
    let r = http_get(url, Some(u64::try_from(timeout).unwrap_or(0)));
    let Some(status) = r.status else {
        let error = r.error.unwrap_or_default();
        return Ok(
            Verdict::defer("provider-unreachable", format!("{url}: {error}")).with_hint(format!(
                "passes once {url} answers 2xx within {}",
                fmt_duration(timeout)
            )),
        );
    };
    if !r.ok {
        return Ok(
            Verdict::defer("provider-unreachable", format!("{url} answered {status}")).with_hint(
                format!("passes once {url} answers 2xx (it answered {status})"),
            ),
        );
    }
    Ok(Verdict::pass_with(format!(
        "{url} answered {status} in {}ms",
        Number(r.latency_ms)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanekeeper_plugin::{Probe, testing};

    fn ctx() -> Context {
        testing::context(r#"{"params":{"url":"http://llm/","timeout":2000}}"#)
    }

    #[test]
    fn refused_503_and_200() {
        testing::reset();
        assert_eq!(
            evaluate(&ctx()).unwrap(),
            Verdict::defer("provider-unreachable", "http://llm/: connection refused")
                .with_hint("passes once http://llm/ answers 2xx within 2s")
        );
        testing::set_probe(
            "http://llm/",
            Probe {
                ok: false,
                status: Some(503),
                latency_ms: 2.0,
                error: None,
            },
        );
        assert_eq!(
            evaluate(&ctx()).unwrap(),
            Verdict::defer("provider-unreachable", "http://llm/ answered 503")
                .with_hint("passes once http://llm/ answers 2xx (it answered 503)")
        );
        testing::set_probe(
            "http://llm/",
            Probe {
                ok: true,
                status: Some(200),
                latency_ms: 2.0,
                error: None,
            },
        );
        assert_eq!(
            evaluate(&ctx()).unwrap(),
            Verdict::pass_with("http://llm/ answered 200 in 2.0ms")
        );
    }
}
