pub fn run(_g: &crate::opt::Global, _a: crate::opt::DemoArgs) -> anyhow::Result<()> { Ok(()) }
