//! `fnhost bench cold-start FILE.wasm`: times each cold-start path in process and prints
//! p50/p99 per path (or JSON), optionally as an SVG chart.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use crate::cli::table;
use crate::cold_start::{ColdStartPath, PathSummary, Rig, human_us, svg_chart};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time every way a request can start on FILE (a wasi:http component): compiled from
    /// scratch, loaded from the disk cache, instantiated on demand, and taken pre-warmed.
    /// Each includes serving one GET / through the component. Runs in process; no host needed.
    ColdStart(ColdStartArgs),
}

#[derive(Debug, Args)]
pub struct ColdStartArgs {
    /// The component to measure.
    pub file: PathBuf,
    /// Measurements of each fast path (disk cache, on demand, pre-warmed).
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub iterations: usize,
    /// Measurements of the from-scratch path (a compile each, so fewer).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub compile_iterations: usize,
    /// Also write the results as an SVG bar chart to this file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Instance slots for the pooling allocator (0 allocates instances on demand).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub pool_instances: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::ColdStart(args) => cold_start(args).await,
    }
}

async fn cold_start(args: ColdStartArgs) -> anyhow::Result<()> {
    if args.iterations == 0 || args.compile_iterations == 0 {
        anyhow::bail!("--iterations and --compile-iterations must be at least 1");
    }
    let wasm = super::read_file(&args.file)?;
    eprintln!(
        "compiling {} ({:.1} KiB) once to start...",
        args.file.display(),
        wasm.len() as f64 / 1024.0
    );
    let started = Instant::now();
    let mut rig = Rig::new(wasm, args.pool_instances)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e:#}", args.file.display()))?;
    eprintln!("compiled in {:.2}s", started.elapsed().as_secs_f64());
    // Warm up caches and the allocator's slots so the first samples are not outliers.
    for _ in 0..10.min(args.iterations) {
        rig.measure(ColdStartPath::OnDemand).await?;
    }
    let mut summaries = Vec::new();
    for path in ColdStartPath::ALL {
        let runs = match path {
            ColdStartPath::Scratch => args.compile_iterations,
            _ => args.iterations,
        };
        eprintln!("measuring {} ({runs} runs)...", path.name());
        let mut samples: Vec<Duration> = Vec::with_capacity(runs);
        for _ in 0..runs {
            samples.push(rig.measure(path).await?);
        }
        summaries.push(PathSummary::of(path, &mut samples));
    }
    if let Some(svg) = &args.svg {
        let title = format!(
            "fnhost cold start: {}",
            args.file
                .file_name()
                .map_or("component".into(), |n| n.to_string_lossy())
        );
        std::fs::write(svg, svg_chart(&title, &summaries))
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", svg.display()))?;
        eprintln!("wrote {}", svg.display());
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "file": args.file,
                "pooling_allocator": args.pool_instances > 0,
                "paths": summaries,
            }))?
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            vec![
                s.name.to_string(),
                s.runs.to_string(),
                human_us(s.p50_us),
                human_us(s.p99_us),
                human_us(s.min_us),
                human_us(s.max_us),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(&["PATH", "RUNS", "P50", "P99", "MIN", "MAX"], &rows)
    );
    Ok(())
}
