//! `lars`: the Lars command line (see `lars --help`).

fn main() {
    let cli = lars_tools::cli::from_env();
    std::process::exit(lars_tools::cli::run(cli));
}
