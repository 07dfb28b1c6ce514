export interface ExecResult {
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

let execaModule: Promise<typeof import('execa')> | undefined;

/**
 * Runs a program without a shell and never rejects on its exit code. execa is loaded on first use:
 * a controller on the local backend never runs a program, and execa's module graph costs memory.
 */
export async function execProgram(file: string, args: string[], timeoutMs = 120_000): Promise<ExecResult> {
  execaModule ??= import('execa');
  const { execa } = await execaModule;
  const result = await execa(file, args, {
    reject: false,
    stdin: 'ignore',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
  });
  return {
    exitCode: result.exitCode,
    stdout: String(result.stdout ?? ''),
    stderr: String(result.stderr ?? ''),
    timedOut: result.timedOut,
  };
}

/** Like execProgram, but a non-zero exit or a timeout is an error carrying the program's own message. */
export async function runProgram(file: string, args: string[], timeoutMs?: number): Promise<string> {
  const result = await execProgram(file, args, timeoutMs);
  if (result.exitCode !== 0 || result.timedOut) {
    const detail =
      (result.stderr || result.stdout).trim() ||
      (result.timedOut ? 'timed out' : `exit code ${result.exitCode}`);
    throw new Error(`${file} ${args.join(' ')} failed: ${detail}`);
  }
  return result.stdout;
}
