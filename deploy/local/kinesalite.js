// Starts kinesalite bound to loopback only (its CLI binds every interface).
// Usage: node kinesalite.js PORT [DATA_DIR]   (DATA_DIR: keep streams and records on disk, in LevelDB)
const kinesalite = require('kinesalite');
const port = parseInt(process.argv[2], 10);
const options = {createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 1000};
if (process.argv[3]) options.path = process.argv[3];
const server = kinesalite(options);
server.listen(port, '127.0.0.1', (err) => {
  if (err) { console.error(err); process.exit(1); }
  console.log(`kinesalite listening on 127.0.0.1:${port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
