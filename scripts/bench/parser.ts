/**
 * Throughput of XmlStreamParser on typical message stanzas. Not a test.
 * Run: npx tsc -p tsconfig.json; node dist/scripts/bench/parser.js [MB per round] [chunkBytes] [rounds]
 */
import { XmlStreamParser } from '../../shared/xml/stream-parser.js';

const totalMb = Number(process.argv[2] ?? 50);
const rounds = Number(process.argv[4] ?? 5);
const chunkBytes = Number(process.argv[3] ?? 16384);

function message(i: number): string {
  return `<message to='romeo@example.net/orchard' from='juliet@example.com/balcony' type='chat' id='msg-${i}' xml:lang='en'>` +
    `<body>Wherefore art thou, Romeo? Deny thy father &amp; refuse thy name. #${i}</body>` +
    `<active xmlns='http://jabber.org/protocol/chatstates'/>` +
    `<origin-id xmlns='urn:xmpp:sid:0' id='c0ffee-${i}'/></message>\n`;
}

const parts: string[] = [];
for (let i = 0; i < 1000; i++) parts.push(message(i));
const block = Buffer.from(parts.join(''));
const chunks: Buffer[] = [];
for (let i = 0; i < block.length; i += chunkBytes) chunks.push(block.subarray(i, i + chunkBytes));
const header = Buffer.from("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>");

function run(bytesWanted: number): { bytes: number; stanzas: number; ms: number; cpuMs: number } {
  let stanzas = 0;
  const parser = new XmlStreamParser(
    {
      streamOpen: () => {},
      stanza: () => void stanzas++,
      streamClose: () => {},
      error: (condition, text) => {
        throw new Error(`${condition}: ${text}`);
      },
    },
    { maxStanzaBytes: 65536, maxDepth: 32, maxAttributes: 64 },
  );
  parser.write(header);
  let bytes = 0;
  const cpuStart = process.cpuUsage();
  const start = process.hrtime.bigint();
  while (bytes < bytesWanted) {
    for (const chunk of chunks) parser.write(chunk);
    bytes += block.length;
  }
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  const cpu = process.cpuUsage(cpuStart);
  return { bytes, stanzas, ms, cpuMs: (cpu.user + cpu.system) / 1000 };
}

run(20 * 1024 * 1024); // warm-up
// Several rounds, reporting the median and the best: on a shared machine single runs vary a lot.
// MB/s of CPU time is shown too, as it depends less on what else the machine is doing.
const wall: number[] = [];
const cpu: number[] = [];
let stanzaRate = 0;
for (let round = 0; round < rounds; round++) {
  const { bytes, stanzas, ms, cpuMs } = run(totalMb * 1024 * 1024);
  const mb = bytes / (1024 * 1024);
  wall.push(mb / (ms / 1000));
  cpu.push(mb / (cpuMs / 1000));
  stanzaRate = Math.max(stanzaRate, (stanzas / ms) * 1000);
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`${rounds} x ${totalMb} MB of message stanzas (~${Math.round(block.length / parts.length)} bytes each) in ${chunkBytes}-byte chunks`);
console.log(`wall clock: median ${median(wall).toFixed(1)} MB/s, best ${Math.max(...wall).toFixed(1)} MB/s (${stanzaRate.toFixed(0)} stanzas/s)`);
console.log(`CPU time:   median ${median(cpu).toFixed(1)} MB/s, best ${Math.max(...cpu).toFixed(1)} MB/s`);
