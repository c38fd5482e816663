//! `vibevoice-rt loadtest`: drives a running server with concurrent WebSocket sessions (or HTTP
//! requests), one concurrency level after another, and reports per level first-audio
//! percentiles, jitter-buffer underruns, audio per wall second and errors.

mod clock;
mod codes;
mod http;
mod record;
mod report;
mod stats;
mod target;
mod text;
mod ws;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{value_parser, Args};
use tokio::net::TcpStream;
use tokio::time::timeout;

use self::clock::Clock;
use self::record::StreamRecord;
use self::report::{LevelReport, Mode, Report};
use self::target::Target;

/// Most concurrent streams of one level.
const MAX_STREAMS: i64 = 10_000;
/// How long the first connection may take before the server counts as unreachable.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between levels, for the server to let go of the last level's work.
const LEVEL_PAUSE: Duration = Duration::from_secs(1);

/// Options of `loadtest`.
#[derive(Debug, Args)]
pub struct LoadtestArgs {
    /// Base URL of the running server: http://host:port (or ws://host:port).
    #[arg(value_name = "URL", env = "TTS_LOADTEST_URL", value_parser = Target::parse)]
    pub url: Target,
    /// Concurrency levels, run one after another: concurrent streams per level.
    #[arg(
        long,
        env = "TTS_LOADTEST_STREAMS",
        value_name = "N,N,...",
        value_delimiter = ',',
        default_value = "1,8,32,128",
        value_parser = value_parser!(u32).range(1..=MAX_STREAMS)
    )]
    pub streams: Vec<u32>,
    /// Seconds each level runs.
    #[arg(
        long,
        env = "TTS_LOADTEST_SECONDS",
        value_name = "S",
        default_value_t = 30,
        value_parser = value_parser!(u64).range(1..=86_400)
    )]
    pub seconds: u64,
    /// Voice of every context or request (default: the server's default voice).
    #[arg(long, env = "TTS_LOADTEST_VOICE", value_name = "V")]
    pub voice: Option<String>,
    /// Client jitter buffer in milliseconds: a context underruns when a frame arrives after a
    /// client that starts playing this long after the first frame would have played it.
    #[arg(
        long,
        env = "TTS_LOADTEST_BUFFER_MS",
        value_name = "MS",
        default_value_t = 300,
        value_parser = value_parser!(u64).range(0..=60_000)
    )]
    pub buffer_ms: u64,
    /// Characters of text per context or request: the built-in prose repeated or cut at a
    /// word (default: the prose as it is, about 3000 characters).
    #[arg(
        long,
        env = "TTS_LOADTEST_TEXT_CHARS",
        value_name = "N",
        value_parser = value_parser!(u64).range(1..=100_000)
    )]
    pub text_chars: Option<u64>,
    /// WebSocket: send the text word by word (one `text` message per word, as an LLM streams
    /// it) instead of in one message; first audio counts from the first word.
    #[arg(long, env = "TTS_LOADTEST_WORD_BY_WORD", conflicts_with = "http")]
    pub word_by_word: bool,
    /// Print the report as one JSON document.
    #[arg(long, env = "TTS_LOADTEST_JSON")]
    pub json: bool,
    /// Drive POST /v1/audio/speech (streamed pcm) instead of the WebSocket.
    #[arg(long, env = "TTS_LOADTEST_HTTP")]
    pub http: bool,
    /// API key: the `api_key` query parameter (WebSocket) or a bearer token (HTTP).
    #[arg(
        long,
        env = "TTS_LOADTEST_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
}

impl LoadtestArgs {
    fn mode(&self) -> Mode {
        if self.http {
            Mode::Http
        } else {
            Mode::Websocket
        }
    }
}

/// Runs every level and prints the report.
pub fn run(args: &LoadtestArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vv-loadtest")
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(run_levels(args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks that the server can be reached, then runs the levels one after another.
async fn run_levels(args: &LoadtestArgs) -> anyhow::Result<Report> {
    let target = &args.url;
    match timeout(REACH_TIMEOUT, TcpStream::connect(target.authority())).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => bail!("cannot reach the server at {}: {error}", target.given()),
        Err(_) => bail!(
            "cannot reach the server at {}: no connection within {} s",
            target.given(),
            REACH_TIMEOUT.as_secs()
        ),
    }
    let text = text::text_of(args.text_chars.map(|n| n as usize));
    let pieces: Arc<Vec<String>> = Arc::new(if args.word_by_word {
        text::words(&text).into_iter().map(str::to_string).collect()
    } else {
        vec![text.clone()]
    });
    let http_plan = match args.mode() {
        Mode::Http => Some(Arc::new(http::Plan::new(
            target,
            &text,
            args.voice.as_deref(),
            args.api_key.as_deref(),
        )?)),
        Mode::Websocket => None,
    };
    let length = Duration::from_secs(args.seconds);
    let mut levels = Vec::with_capacity(args.streams.len());
    for (i, &streams) in args.streams.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(LEVEL_PAUSE).await;
        }
        eprintln!(
            "loadtest: level {}/{}: {streams} stream(s) for {} s",
            i + 1,
            args.streams.len(),
            args.seconds
        );
        let clock = Clock::start(length);
        let ws_plan = Arc::new(ws::Plan {
            url: target.ws_url(args.voice.as_deref(), args.api_key.as_deref()),
            level: i + 1,
            pieces: Arc::clone(&pieces),
        });
        let tasks: Vec<_> = (0..streams)
            .map(|index| match &http_plan {
                Some(plan) => tokio::spawn(http::stream(plan.clone(), clock)),
                None => tokio::spawn(ws::stream(ws_plan.clone(), clock, index)),
            })
            .collect();
        let mut records: Vec<StreamRecord> = Vec::with_capacity(tasks.len());
        for task in tasks {
            records.push(task.await.context("a stream's task failed")?);
        }
        levels.push(LevelReport::new(
            streams,
            &records,
            Duration::from_millis(args.buffer_ms),
        ));
    }
    Ok(Report {
        url: target.given().to_string(),
        mode: args.mode(),
        seconds: args.seconds,
        buffer_ms: args.buffer_ms,
        text_chars: text.chars().count(),
        word_by_word: args.word_by_word,
        levels,
    })
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::error::ErrorKind;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["vibevoice-rt", "loadtest"].iter().chain(args))
    }

    #[test]
    fn defaults_and_flags() {
        let cli = parse(&["http://127.0.0.1:8000/"]).unwrap();
        assert!(cli.command.service().is_none());
        let Command::Loadtest(args) = &cli.command else {
            panic!("not loadtest");
        };
        assert_eq!(args.streams, [1, 8, 32, 128]);
        assert_eq!((args.seconds, args.buffer_ms), (30, 300));
        assert!(!args.json && !args.http);
        assert_eq!(
            (args.voice.as_deref(), args.api_key.as_deref()),
            (None, None)
        );
        assert_eq!(args.url.authority(), "127.0.0.1:8000");

        let cli = parse(&[
            "ws://h:9",
            "--streams",
            "2,4",
            "--seconds",
            "5",
            "--voice",
            "tiny",
            "--buffer-ms",
            "0",
            "--json",
            "--http",
            "--api-key",
            "k",
        ])
        .unwrap();
        let Command::Loadtest(args) = &cli.command else {
            panic!("not loadtest");
        };
        assert_eq!(args.streams, [2, 4]);
        assert_eq!((args.seconds, args.buffer_ms), (5, 0));
        assert!(args.json && args.http);
        assert_eq!(
            (args.voice.as_deref(), args.api_key.as_deref()),
            (Some("tiny"), Some("k"))
        );
    }

    #[test]
    fn invalid_levels_seconds_and_urls_are_usage_errors() {
        for args in [
            &["http://h:1", "--streams", "0"][..],
            &["http://h:1", "--streams", "a,b"],
            &["http://h:1", "--streams", "1,,2"],
            &["http://h:1", "--seconds", "0"],
            &["http://h:1", "--seconds", "x"],
            &["https://h:1"],
            &[],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}: {error}");
            assert_ne!(error.kind(), ErrorKind::DisplayHelp, "{args:?}");
        }
    }
}
