// One BullMQ measurement of the benchmark; bench/bullmq.py runs it with NODE_PATH
// set to the node_modules that it installed at run time.
//
//   node bullmq_bench.js add      JOBS                Queue.add, one job at a time
//   node bullmq_bench.js addBulk  JOBS                Queue.addBulk, batches of 1000
//   node bullmq_bench.js process  JOBS CONCURRENCY
//
// The environment variable BULLMQ_BENCH_REDIS contains the ioredis options as JSON
// ({host, port, password, db}), which keeps the password off the command line.
// The result is one JSON line on stdout: {"jobs": N, "seconds": S}.
//
// A processing run pauses the queue, adds the jobs, starts a Worker and waits
// until it is connected. Resuming the queue starts the clock, and the last
// "completed" event stops it. The Redis database should be empty before each run.
'use strict';

const { Queue, Worker } = require('bullmq');

const QUEUE_NAME = 'bench';
const BATCH = 1000;
const TIMEOUT_MS = 300000;

function jobBatch(size) {
  return Array.from({ length: size }, () => ({ name: 'noop', data: {} }));
}

async function addBulk(queue, jobs) {
  for (let start = 0; start < jobs; start += BATCH) {
    await queue.addBulk(jobBatch(Math.min(BATCH, jobs - start)));
  }
}

async function measureAdd(queue, jobs, bulk) {
  const began = process.hrtime.bigint();
  if (bulk) {
    await addBulk(queue, jobs);
  } else {
    for (let index = 0; index < jobs; index += 1) {
      await queue.add('noop', {});
    }
  }
  return Number(process.hrtime.bigint() - began) / 1e9;
}

async function measureProcess(queue, connection, jobs, concurrency) {
  await queue.pause();
  await addBulk(queue, jobs);
  let completed = 0;
  let failed = 0;
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  const worker = new Worker(QUEUE_NAME, async () => ({}), { connection, concurrency, autorun: false });
  worker.on('completed', () => {
    completed += 1;
    if (completed === jobs) finish();
  });
  worker.on('failed', () => { failed += 1; });
  worker.run().catch((error) => { console.error(error); process.exit(1); });
  await worker.waitUntilReady();
  const timer = setTimeout(() => {
    console.error(`BullMQ: ${jobs - completed} of ${jobs} jobs unfinished after ${TIMEOUT_MS} ms`);
    process.exit(1);
  }, TIMEOUT_MS);
  const began = process.hrtime.bigint();
  await queue.resume();
  await done;
  const seconds = Number(process.hrtime.bigint() - began) / 1e9;
  clearTimeout(timer);
  await worker.close();
  if (failed) throw new Error(`${failed} BullMQ no-op jobs failed`);
  return seconds;
}

async function main() {
  const [mode, jobsText, concurrencyText] = process.argv.slice(2);
  const connection = { ...JSON.parse(process.env.BULLMQ_BENCH_REDIS), maxRetriesPerRequest: null };
  const jobs = Number(jobsText);
  const queue = new Queue(QUEUE_NAME, { connection });
  let seconds;
  if (mode === 'add' || mode === 'addBulk') {
    seconds = await measureAdd(queue, jobs, mode === 'addBulk');
  } else if (mode === 'process') {
    seconds = await measureProcess(queue, connection, jobs, Number(concurrencyText));
  } else {
    throw new Error(`unknown mode ${mode}: expected add, addBulk or process`);
  }
  await queue.close();
  console.log(JSON.stringify({ jobs, seconds }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
