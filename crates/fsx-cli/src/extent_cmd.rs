//! `fsx extent inspect|verify`: the operator's view of single extent files.
//!
//! Both commands read a file whole and never modify it. `inspect` reports as
//! much as the file allows even when it is damaged (the header of a blob
//! whose data is corrupt is still useful); `verify` is the scripted check:
//! one line per bad file and a non-zero exit when any is bad.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use fsx_format::{Codec, Extent, ExtentView, Header, content_key};
use serde::Serialize;

/// Commands on extent files.
#[derive(Subcommand)]
pub enum ExtentCommand {
    /// Print an extent's header, present pages, checksum status and content
    /// key. Exits 0 when the extent is valid, 1 when it is not.
    Inspect {
        /// The extent file.
        file: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check that every file is a valid extent (structure, checksum, and
    /// compressed data). Prints one line per bad file; exits 0 only when all
    /// are valid.
    Verify {
        /// Extent files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also print a line for each good file.
        #[arg(long, short)]
        verbose: bool,
    },
}

/// Runs an extent command.
pub fn run(cmd: ExtentCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ExtentCommand::Inspect { file, json } => inspect(&file, json),
        ExtentCommand::Verify { files, verbose } => Ok(verify(&files, verbose)),
    }
}

#[derive(Serialize)]
struct Report {
    file: String,
    bytes: usize,
    content_key: String,
    version: u16,
    flags: u16,
    compressed_flag: bool,
    codec: String,
    page_size: u32,
    page_count: u32,
    extent_size: u32,
    stored_data_len: u32,
    present_pages: Vec<u32>,
    checksum: String,
    computed_checksum: String,
    checksum_ok: bool,
    valid: bool,
    error: Option<String>,
}

fn inspect(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let blob = read_extent_file(file)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("cannot read {}", file.display()))?;
    // Without a sound header there is nothing to describe.
    let header = Header::parse(&blob)
        .with_context(|| format!("{} is not a readable extent", file.display()))?;
    let (present_pages, computed, error) = match ExtentView::parse(&blob) {
        Ok(view) => {
            let computed = view.computed_checksum();
            // Full decode covers the checksum and, for zstd, the frame.
            let error = Extent::decode(&blob).err().map(|e| e.to_string());
            (view.present_pages().collect(), Some(computed), error)
        }
        Err(e) => (Vec::new(), None, Some(e.to_string())),
    };
    let report = Report {
        file: file.display().to_string(),
        bytes: blob.len(),
        content_key: content_key(&blob),
        version: header.version,
        flags: header.flags,
        compressed_flag: header.compressed_flag(),
        codec: header.codec.to_string(),
        page_size: header.page_size,
        page_count: header.page_count,
        extent_size: header.extent_size,
        stored_data_len: header.stored_data_len(),
        present_pages,
        checksum: format!("{:016x}", header.checksum),
        computed_checksum: computed.map_or_else(|| "-".into(), |c| format!("{c:016x}")),
        checksum_ok: computed == Some(header.checksum),
        valid: error.is_none(),
        error,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report, &header);
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_text(r: &Report, h: &Header) {
    println!("file:          {} ({} bytes)", r.file, r.bytes);
    println!("content key:   {}", r.content_key);
    println!("version:       {}", r.version);
    let note = match (h.compressed_flag(), h.codec) {
        (true, Codec::Raw) => " (compressed flag set, data stored raw)",
        (true, _) => " (compressed)",
        _ => "",
    };
    println!("flags:         {:#06x}{note}", r.flags);
    println!("codec:         {}", r.codec);
    println!("page size:     {}", r.page_size);
    println!("page count:    {}", r.page_count);
    println!(
        "extent size:   {} bytes (stored {} bytes)",
        r.extent_size, r.stored_data_len
    );
    let status = if r.checksum_ok {
        "ok".to_string()
    } else {
        format!("MISMATCH, data hashes to {}", r.computed_checksum)
    };
    println!("checksum:      {} ({status})", r.checksum);
    println!(
        "present pages: {} [{}]",
        r.present_pages.len(),
        ranges(&r.present_pages)
    );
    match &r.error {
        None => println!("status:        valid"),
        Some(e) => println!("status:        INVALID: {e}"),
    }
}

/// `0-3, 7, 9-11`: compact for the usual full or nearly full extent.
fn ranges(pages: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = pages.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(", ")
}

/// Largest file the extent commands read: a header, the bitmap of the most
/// pages, and [`fsx_format::MAX_DECOMPRESSED_LEN`] of page data — more than
/// any extent fsx writes (16 MiB at most) or can decode. Reading stops past
/// it, so `/dev/zero` or a huge stray file is an error, not an allocation
/// until memory runs out.
const MAX_EXTENT_FILE: u64 = fsx_format::HEADER_LEN as u64
    + (fsx_format::MAX_DECOMPRESSED_LEN / fsx_format::MIN_PAGE_SIZE / 8) as u64
    + fsx_format::MAX_DECOMPRESSED_LEN as u64;

/// Reads `file` whole, refusing one longer than [`MAX_EXTENT_FILE`].
fn read_extent_file(file: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(file).map_err(|e| format!("cannot read: {e}"))?;
    let mut blob = Vec::new();
    f.take(MAX_EXTENT_FILE + 1)
        .read_to_end(&mut blob)
        .map_err(|e| format!("cannot read: {e}"))?;
    if blob.len() as u64 > MAX_EXTENT_FILE {
        return Err(format!(
            "longer than the largest extent ({MAX_EXTENT_FILE} bytes): not an extent file"
        ));
    }
    Ok(blob)
}

fn verify(files: &[PathBuf], verbose: bool) -> ExitCode {
    let mut bad = 0usize;
    for file in files {
        let outcome = read_extent_file(file)
            .and_then(|blob| Extent::decode(&blob).map(|_| ()).map_err(|e| e.to_string()));
        match outcome {
            Ok(()) if verbose => println!("{}: ok", file.display()),
            Ok(()) => {}
            Err(fault) => {
                bad += 1;
                println!("{}: {fault}", file.display());
            }
        }
    }
    if bad == 0 {
        if verbose {
            println!("{} extent(s) valid", files.len());
        }
        ExitCode::SUCCESS
    } else {
        eprintln!("{bad} of {} file(s) are not valid extents", files.len());
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::ranges;

    #[test]
    fn ranges_compacts_runs() {
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[0, 1, 2, 3, 7, 9, 10, 11]), "0-3, 7, 9-11");
        assert_eq!(ranges(&[5]), "5");
    }
}
