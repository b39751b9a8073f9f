//! The CPU a process has used, from `/proc` (Linux), for the examples that
//! measure the gateway's cost per request.

use std::process::Command;

/// User + system CPU time of process `pid`, in seconds.
#[allow(dead_code)] // not every example that includes this file reads both
pub fn cpu_seconds(pid: u32) -> f64 {
    let (user, system) = user_and_system_seconds(pid);
    user + system
}

/// User and system (kernel) CPU time of process `pid`, in seconds.
pub fn user_and_system_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..]
        .split(' ')
        .collect();
    let ticks = clock_ticks() as f64;
    (
        fields[11].parse::<f64>().expect("utime") / ticks,
        fields[12].parse::<f64>().expect("stime") / ticks,
    )
}

fn clock_ticks() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}
