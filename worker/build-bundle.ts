import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { PAYLOAD_CONVERTER_PATH, WORKFLOWS_PATH } from './create-worker';

export const DEFAULT_BUNDLE_PATH = path.join(__dirname, '..', 'dist', 'workflow-bundle.js');

/** Bundles the workflow code once, so production workers start without webpack. */
export async function buildWorkflowBundle(outPath = DEFAULT_BUNDLE_PATH): Promise<string> {
  const { code } = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, payloadConverterPath: PAYLOAD_CONVERTER_PATH, logger: quietLogger });
  await mkdir(path.dirname(outPath), { recursive: true });
  await writeFile(outPath, code);
  return outPath;
}

const noop = () => {};
const quietLogger = { log: noop, trace: noop, debug: noop, info: noop, warn: console.warn, error: console.error };

if (require.main === module) {
  buildWorkflowBundle(process.argv[2])
    .then((out) => console.log(`workflow bundle written to ${out}`))
    .catch((err: unknown) => {
      console.error(`workflow bundle failed: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    });
}
