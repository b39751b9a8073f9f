//! The process's own series (CPU time, memory, open files, start time),
//! under the names every Prometheus client library exports them, read from
//! `/proc/self` at each scrape. Elsewhere than Linux they are left out.

use std::sync::OnceLock;

use super::{
    PROCESS_CPU, PROCESS_MAX_FDS, PROCESS_OPEN_FDS, PROCESS_RESIDENT, PROCESS_START,
    PROCESS_VIRTUAL,
};

/// Clock ticks a second in `/proc/*/stat` (`USER_HZ`: 100 on every Linux
/// architecture, whatever the kernel's own tick rate).
const TICKS: f64 = 100.0;

/// The process's series in Prometheus' text format, each with its
/// `# HELP` and `# TYPE` (from [`super::EXPORTED`]), to append to
/// `/metrics`: written here rather than through the recorder because CPU
/// time is a counter in fractions of a second. Empty where `/proc` is not.
pub fn render() -> String {
    let Some(stat) = Stat::read() else {
        return String::new();
    };
    let mut values = vec![
        (PROCESS_CPU, stat.cpu_seconds),
        (PROCESS_VIRTUAL, stat.virtual_bytes),
        (PROCESS_RESIDENT, stat.resident_pages * page_size()),
    ];
    if let Some(open) = open_fds() {
        values.push((PROCESS_OPEN_FDS, open));
    }
    if let Some(max) = max_fds() {
        values.push((PROCESS_MAX_FDS, max));
    }
    if let Some(boot) = boot_time() {
        values.push((PROCESS_START, boot + stat.start_ticks / TICKS));
    }
    let mut out = String::new();
    for (name, value) in values {
        let Some((_, kind, help)) = super::EXPORTED.iter().find(|(n, _, _)| *n == name) else {
            continue;
        };
        let kind = match kind {
            super::MetricType::Counter => "counter",
            super::MetricType::Gauge => "gauge",
            super::MetricType::Histogram => continue,
        };
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n"
        ));
    }
    out
}

/// Whether `name` is one of the process's series (rendered here, not by
/// the recorder).
pub fn is_process(name: &str) -> bool {
    name.starts_with("process_")
}

/// What `/proc/self/stat` says of the process.
struct Stat {
    cpu_seconds: f64,
    virtual_bytes: f64,
    resident_pages: f64,
    start_ticks: f64,
}

impl Stat {
    fn read() -> Option<Stat> {
        parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name may hold spaces and parentheses: fields start
    // after its last `)`. Field 3 (state) is the first there.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        cpu_seconds: (field(14)? + field(15)?) / TICKS,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_pages: field(24)?,
    })
}

fn boot_time() -> Option<f64> {
    static BOOT: OnceLock<Option<f64>> = OnceLock::new();
    *BOOT.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()
    })
}

/// Bytes a page: 4 KiB on the machines Moat runs on; `/proc/self/smaps`
/// would say otherwise, but reading it costs far more than a scrape should.
fn page_size() -> f64 {
    4096.0
}

fn open_fds() -> Option<f64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as f64)
}

fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        // A command name with a space and a parenthesis of its own.
        let line = "4242 (moat (x) y) S 1 4242 4242 0 -1 4194560 2000 0 0 0 250 50 0 0 20 0 9 0 \
                    123456 104857600 2560 18446744073709551615 0 0 0 0 0 0 0 0 0";
        let stat = parse_stat(line).expect("parsed");
        assert_eq!(stat.cpu_seconds, 3.0);
        assert_eq!(stat.start_ticks, 123456.0);
        assert_eq!(stat.virtual_bytes, 104857600.0);
        assert_eq!(stat.resident_pages, 2560.0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn every_process_series_has_help_type_and_a_value() {
        let text = render();
        for name in [
            PROCESS_CPU,
            PROCESS_RESIDENT,
            PROCESS_VIRTUAL,
            PROCESS_OPEN_FDS,
            PROCESS_MAX_FDS,
            PROCESS_START,
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{text}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{text}");
            let value: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name}: {text}"));
            assert!(value > 0.0 || name == PROCESS_CPU, "{name} = {value}");
        }
    }
}
