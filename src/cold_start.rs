//! Cold-start measurement: each way a request can find its code and instance, timed
//! in-process on one component, for `fnhost bench cold-start` and the criterion benches.
//!
//! The paths, from slowest to fastest:
//! - from scratch: compile the component (as an upload does), then serve on a new instance;
//! - from the disk cache: load compiled code from disk (as after a restart), then serve;
//! - on demand: code in memory, instantiate on the request path, serve;
//! - pre-warmed: take an instance instantiated ahead of demand, serve.
//!
//! "Serve" is one GET through `wasi:http/incoming-handler` with the body collected: the
//! host's and the function's work, without sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::engine::{Engine, EngineConfig, LoadedComponent, WarmInstance, check_component};
use crate::model::{Digest, FunctionConfig};
use crate::store::ModuleStore;

/// One engine (with its own compiled cache in a temporary directory) and one component.
pub struct Rig {
    engine: Engine,
    digest: Digest,
    wasm: Bytes,
    config: FunctionConfig,
    component: Arc<LoadedComponent>,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// Validates and compiles `wasm` once. `pool_instances` 0 allocates instances on demand
    /// instead of from the pooling allocator.
    pub async fn new(wasm: Vec<u8>, pool_instances: u32) -> anyhow::Result<Self> {
        let world = check_component(&wasm)?.world;
        let dir = tempfile::tempdir()?;
        let modules = Arc::new(ModuleStore::open(dir.path().join("modules"), None)?);
        let digest = Digest::of(&wasm);
        modules.put(&digest, &wasm)?;
        let engine = Engine::new(
            EngineConfig {
                pool_instances,
                ..EngineConfig::default()
            },
            dir.path().join("compiled"),
            modules,
        )?;
        let wasm = Bytes::from(wasm);
        let component = engine.prepare(digest, wasm.clone(), world, &|_| {}).await?;
        Ok(Self {
            engine,
            digest,
            wasm,
            config: FunctionConfig::default(),
            component,
            _dir: dir,
        })
    }

    /// Compiles from the wasm bytes, as an upload does (cache file written too).
    pub async fn compile(&mut self) -> anyhow::Result<Duration> {
        self.engine.forget(&self.digest);
        let started = Instant::now();
        self.component = self
            .engine
            .prepare(
                self.digest,
                self.wasm.clone(),
                self.component.world(),
                &|_| {},
            )
            .await?;
        Ok(started.elapsed())
    }

    /// Loads the compiled code from the disk cache, as after a restart.
    pub async fn load_cached(&mut self) -> anyhow::Result<Duration> {
        self.engine.unload(&self.digest);
        let started = Instant::now();
        self.component = self.engine.load(self.digest).await?;
        Ok(started.elapsed())
    }

    /// Instantiates ahead of demand (untimed by callers that only want to serve).
    pub async fn instantiate(&self) -> anyhow::Result<WarmInstance> {
        Ok(self
            .engine
            .instantiate(&self.component, &self.config)
            .await?)
    }

    /// Serves one request on `warm`, or on an instance made on the spot.
    pub async fn serve(&self, warm: Option<WarmInstance>) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let request = http::Request::builder()
            .uri("/")
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))?;
        let response = self
            .engine
            .invoke(
                &self.component,
                "bench",
                Default::default(),
                &self.config,
                warm,
                request,
                Box::new(|_| {}),
                crate::engine::fairness::Work::Short(None),
            )
            .await
            .map_err(|failure| anyhow::anyhow!("the function failed: {}", failure.error))?;
        if !response.status().is_success() {
            anyhow::bail!("the function answered {}", response.status());
        }
        response.into_body().collect().await?;
        Ok(started.elapsed())
    }

    /// One measurement of `path`.
    pub async fn measure(&mut self, path: ColdStartPath) -> anyhow::Result<Duration> {
        Ok(match path {
            ColdStartPath::Scratch => self.compile().await? + self.serve(None).await?,
            ColdStartPath::DiskCache => self.load_cached().await? + self.serve(None).await?,
            ColdStartPath::OnDemand => self.serve(None).await?,
            ColdStartPath::Prewarmed => {
                let warm = self.instantiate().await?;
                self.serve(Some(warm)).await?
            }
        })
    }
}

/// The ways a request can start, slowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColdStartPath {
    Scratch,
    DiskCache,
    OnDemand,
    Prewarmed,
}

impl ColdStartPath {
    pub const ALL: [ColdStartPath; 4] = [
        Self::Scratch,
        Self::DiskCache,
        Self::OnDemand,
        Self::Prewarmed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Scratch => "from scratch (compile)",
            Self::DiskCache => "from disk cache",
            Self::OnDemand => "on-demand instance",
            Self::Prewarmed => "pre-warmed instance",
        }
    }

    /// A short key for JSON output.
    pub fn key(self) -> &'static str {
        match self {
            Self::Scratch => "scratch",
            Self::DiskCache => "disk_cache",
            Self::OnDemand => "on_demand",
            Self::Prewarmed => "prewarmed",
        }
    }
}

/// Percentiles of one path's samples.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PathSummary {
    pub path: &'static str,
    pub name: &'static str,
    pub runs: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub min_us: f64,
    pub max_us: f64,
}

impl PathSummary {
    pub fn of(path: ColdStartPath, samples: &mut [Duration]) -> Self {
        samples.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let at = |q: f64| {
            let rank = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len());
            us(samples[rank - 1])
        };
        Self {
            path: path.key(),
            name: path.name(),
            runs: samples.len(),
            p50_us: at(0.5),
            p99_us: at(0.99),
            min_us: us(samples[0]),
            max_us: us(samples[samples.len() - 1]),
        }
    }
}

/// A horizontal bar chart of p50 and p99 per path on a log scale, as a standalone SVG.
pub fn svg_chart(title: &str, rows: &[PathSummary]) -> String {
    const WIDTH: f64 = 760.0;
    const LEFT: f64 = 190.0;
    const RIGHT: f64 = 90.0;
    const ROW: f64 = 46.0;
    const TOP: f64 = 50.0;
    let height = TOP + ROW * rows.len() as f64 + 40.0;
    let plot = WIDTH - LEFT - RIGHT;
    let max = rows.iter().map(|r| r.p99_us).fold(10.0, f64::max);
    let (lo, hi) = (1.0f64.log10(), (max * 1.5).log10());
    let x = |us: f64| LEFT + plot * ((us.max(1.0).log10() - lo) / (hi - lo));
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>
"##,
        escape(title)
    );
    // Decade grid lines: 1 µs, 10 µs, ... on the log axis.
    let mut decade = 1.0;
    while decade <= 10f64.powf(hi) {
        let gx = x(decade);
        svg.push_str(&format!(
            r##"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle" fill="#666">{}</text>
"##,
            height - 30.0,
            height - 14.0,
            human_us(decade)
        ));
        decade *= 10.0;
    }
    for (i, row) in rows.iter().enumerate() {
        let y = TOP + ROW * i as f64 + 8.0;
        svg.push_str(&format!(
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>
<rect x="{LEFT}" y="{y:.1}" width="{:.1}" height="14" fill="#2b7bb9"/>
<rect x="{LEFT}" y="{:.1}" width="{:.1}" height="10" fill="#9cc3e3"/>
<text x="{:.1}" y="{:.1}" fill="#222">p50 {} / p99 {}</text>
"##,
            LEFT - 8.0,
            y + 16.0,
            escape(row.name),
            (x(row.p50_us) - LEFT).max(1.0),
            y + 16.0,
            (x(row.p99_us) - LEFT).max(1.0),
            (x(row.p99_us) + 6.0).min(WIDTH - RIGHT + 4.0),
            y + 24.0,
            human_us(row.p50_us),
            human_us(row.p99_us),
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

/// `850µs`, `1.2ms`, `3.4s`.
pub fn human_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}µs")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_chart() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let summary = PathSummary::of(ColdStartPath::OnDemand, &mut samples);
        assert_eq!((summary.p50_us, summary.p99_us), (50.0, 99.0));
        assert_eq!((summary.min_us, summary.max_us), (1.0, 100.0));
        let svg = svg_chart("hello <x>", &[summary]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("hello &lt;x&gt;") && svg.contains("p50 50µs / p99 99µs"));
        assert_eq!(human_us(1500.0), "1.50ms");
    }
}
