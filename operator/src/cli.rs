//! Command line: `silo-operator run` and `silo-operator crd`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Silo: a database of its own for every service.
#[derive(Debug, Parser)]
#[command(name = "silo-operator", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CRDs as YAML, or write them into a directory.
    Crd {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd { out_dir } => print_or_write_crds(out_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("silo-operator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_or_write_crds(out_dir: Option<PathBuf>) -> anyhow::Result<()> {
    match out_dir {
        Some(dir) => crate::crd_yaml::write_crds(&dir),
        None => {
            for (_, text) in crate::crd_yaml::crd_files()? {
                println!("---\n{text}");
            }
            Ok(())
        }
    }
}
