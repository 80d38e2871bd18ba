// What every Bun benchmark server does once it listens: says so on stdout ("listening <port>"), exits on
// SIGTERM rather than dying of it (so that a CPU profile, --cpu-prof, gets written), and answers "gc" on
// stdin with a full collection and "rss <bytes> heap <bytes>".
export async function serving(port: number | undefined): Promise<void> {
  console.log(`listening ${port}`);
  process.on('SIGTERM', () => process.exit(0));
  for await (const line of console) {
    if (line.trim() !== 'gc') continue;
    Bun.gc(true);
    const m = process.memoryUsage();
    console.log(`rss ${m.rss} heap ${m.heapUsed}`);
  }
}
