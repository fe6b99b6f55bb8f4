//! `pipehttp dev-cert`: a self-signed certificate for `localhost`, for
//! development, as `dotnet dev-certs https` makes one for Kestrel.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct DevCertArgs {
    /// The directory to write localhost.pem and localhost-key.pem into.
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// Replace files that are already there.
    #[arg(long)]
    force: bool,
}

pub fn run(args: &DevCertArgs) -> ExitCode {
    match write(args) {
        Ok((cert, key)) => {
            println!("Wrote a self-signed certificate for localhost, 127.0.0.1 and ::1:");
            println!("  certificate: {}", cert.display());
            println!("  private key: {}", key.display());
            println!("Serve https with it:");
            println!(
                "  pipehttp serve --urls https://pipe:/secure --cert {} --key {}",
                cert.display(),
                key.display()
            );
            println!("Call the server, trusting it:");
            println!(
                "  pipehttp get --cacert {} https://pipe:/secure:/test",
                cert.display()
            );
            println!(
                "  curl --cacert {} --unix-socket <socket path> https://localhost/test",
                cert.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pipehttp: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(args: &DevCertArgs) -> Result<(PathBuf, PathBuf), String> {
    let cert_path = args.out.join("localhost.pem");
    let key_path = args.out.join("localhost-key.pem");
    if !args.force {
        for path in [&cert_path, &key_path] {
            if path.exists() {
                return Err(format!(
                    "{} exists already: pass --force to replace it, or choose another --out",
                    path.display()
                ));
            }
        }
    }
    let names = ["localhost", "127.0.0.1", "::1"]
        .map(str::to_owned)
        .to_vec();
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot make a certificate: {e}"))?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    write_file(&cert_path, certified.cert.pem().as_bytes(), false)?;
    write_file(
        &key_path,
        certified.signing_key.serialize_pem().as_bytes(),
        true,
    )?;
    Ok((cert_path, key_path))
}

fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), String> {
    use std::io::Write;
    let file = if private {
        create_private_file(path)
    } else {
        std::fs::File::create(path)
    };
    file.and_then(|mut f| f.write_all(bytes))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Creates (or truncates) a file only the current user may read, for the
/// private key: on Unix with mode 0600 from the start, never looser even for
/// a moment; on Windows it inherits its directory's ACL, which in a user's
/// profile admits that user and administrators.
fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        // The mode above applies to new files only; an old one may be looser.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(file)
    }
    #[cfg(not(unix))]
    options.open(path)
}
