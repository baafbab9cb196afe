//! Writes each event's JSON schema to `shared/events/{kind}.v{version}.json` (`make
//! event-schemas`); a unit test fails when a committed file differs from what the types derive.

fn main() -> std::io::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    std::fs::create_dir_all(&dir)?;
    for kind in mecapy_shared::events::KINDS {
        let path = dir.join(mecapy_shared::events::schema_file(kind));
        std::fs::write(&path, mecapy_shared::events::schema_text(kind))?;
        println!("{}", path.display());
    }
    Ok(())
}
