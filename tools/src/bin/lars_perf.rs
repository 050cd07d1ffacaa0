//! `lars-perf`: the Lars load generator (see `lars-perf --help`).

fn main() {
    std::process::exit(lars_tools::perf::main());
}
