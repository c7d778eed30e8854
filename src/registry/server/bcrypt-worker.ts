// Worker thread of BcryptPool: bcrypt is deliberately slow CPU work (about 250 ms
// at cost 12), so it runs here and never on the thread that serves requests.
import { parentPort } from 'node:worker_threads';
import { compareSync } from 'bcryptjs';

interface Job {
  id: number;
  password: string;
  hash: string;
}

parentPort?.on('message', (job: Job) => {
  let ok = false;
  try {
    ok = compareSync(job.password, job.hash);
  } catch {
    ok = false; // a malformed hash matches nothing
  }
  parentPort?.postMessage({ id: job.id, ok });
});
