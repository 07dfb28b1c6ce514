import { execa } from 'execa';
import { chmod, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** Environment for the test's own git commands: no user or system config of this machine. */
const GIT_ENV = {
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_AUTHOR_NAME: 'test',
  GIT_AUTHOR_EMAIL: 'test@example.com',
  GIT_COMMITTER_NAME: 'test',
  GIT_COMMITTER_EMAIL: 'test@example.com',
  GIT_ALLOW_PROTOCOL: 'file',
};

export const git = (cwd: string, args: string[]) => execa('git', args, { cwd, env: GIT_ENV });

/** A bare repository `<root>/<name>.git` with a work tree beside it to commit and push from. */
export class TestRepo {
  readonly bare: string;
  private readonly work: string;

  private constructor(root: string, name: string) {
    this.bare = join(root, `${name}.git`);
    this.work = join(root, `${name}.work`);
  }

  static async create(root: string, name: string): Promise<TestRepo> {
    const repo = new TestRepo(root, name);
    await mkdir(repo.bare, { recursive: true });
    await git(repo.bare, ['init', '--quiet', '--bare', '--initial-branch=main']);
    await git(root, ['clone', '--quiet', repo.bare, repo.work]);
    await git(repo.work, ['checkout', '--quiet', '-b', 'main']);
    return repo;
  }

  /** Applies changes (content, a symlink as {link}, or null to delete), commits and pushes to main. */
  async commit(
    changes: Record<string, string | { link: string } | null>,
    message = 'change',
    branch = 'main',
  ): Promise<string> {
    for (const [path, value] of Object.entries(changes)) {
      const file = join(this.work, path);
      await rm(file, { recursive: true, force: true });
      if (value === null) continue;
      await mkdir(dirname(file), { recursive: true });
      if (typeof value === 'string') await writeFile(file, value);
      else await symlink(value.link, file);
    }
    await git(this.work, ['add', '-A']);
    await git(this.work, ['commit', '--quiet', '--allow-empty', '-m', message]);
    await git(this.work, ['push', '--quiet', 'origin', `HEAD:${branch}`]);
    return (await git(this.work, ['rev-parse', 'HEAD'])).stdout.trim();
  }

  async chmod(path: string, mode: number): Promise<string> {
    await chmod(join(this.work, path), mode);
    return this.commit({}, `chmod ${path}`);
  }

  async tag(name: string): Promise<void> {
    await git(this.work, ['tag', '-a', name, '-m', name]);
    await git(this.work, ['push', '--quiet', 'origin', name]);
  }

  /** Adds another repository as a submodule at `path` with the given (possibly relative) URL. */
  async addSubmodule(url: string, path: string, localSource: string): Promise<string> {
    await git(this.work, [
      '-c',
      'protocol.file.allow=always',
      'submodule',
      'add',
      '--quiet',
      localSource,
      path,
    ]);
    await git(this.work, ['config', '-f', '.gitmodules', `submodule.${path}.url`, url]);
    return this.commit({}, `add ${path}`);
  }
}
