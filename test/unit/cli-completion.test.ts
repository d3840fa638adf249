import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { bashCompletion, completionTree, zshCompletion } from '../../cli/completion';
import { buildProgram } from '../../cli/program';

const hasShell = (shell: string) => spawnSync('sh', ['-c', `command -v ${shell}`]).status === 0;

/** What bash completes for the words typed so far (the last one being completed), with the script sourced. */
function bashComplete(script: string, words: string[]): string[] {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'governed-completion-')), 'governed.bash');
  fs.writeFileSync(file, script);
  const array = words.map((w) => `'${w.replace(/'/g, `'\\''`)}'`).join(' ');
  const result = spawnSync('bash', ['-c', `source "$1"; COMP_WORDS=(${array}); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); _governed; printf '%s\\n' "\${COMPREPLY[@]}"`, 'bash', file], {
    encoding: 'utf8',
  });
  expect(result.stderr).toBe('');
  return result.stdout.split('\n').filter(Boolean);
}

function allPaths(command: Command, prefix: string[] = []): string[] {
  return command.commands.flatMap((c) => [[...prefix, c.name()].join(' '), ...allPaths(c, [...prefix, c.name()])]);
}

describe('completion from the command tree', () => {
  it('has a node for every command of the program, with its options', () => {
    const program = buildProgram();
    const nodes = completionTree(program);
    const hidden = new Set(['tenants key']);
    for (const p of allPaths(program).filter((p) => !hidden.has(p))) expect(nodes.map((n) => n.path)).toContain(p);
    const submit = nodes.find((n) => n.path === 'runs submit')!;
    expect(submit.options.flatMap((o) => o.flags)).toEqual(expect.arrayContaining(['--step', '--budget', '--help', '--api-url', '--json', '--profile']));
    expect(submit.options.flatMap((o) => o.flags)).not.toContain('--version');
    expect(nodes.find((n) => n.path === '')!.options.flatMap((o) => o.flags)).toContain('--version');
  });

  it.skipIf(!hasShell('bash') && !process.env.CI)('completes commands, subcommands, options and choices in bash', () => {
    const script = bashCompletion(buildProgram());
    expect(bashComplete(script, ['governed', 'ru'])).toEqual(['runs']);
    expect(bashComplete(script, ['governed', 'runs', ''])).toEqual(expect.arrayContaining(['submit', 'list', 'watch', 'audit']));
    expect(bashComplete(script, ['governed', 'tenants', 'keys', ''])).toContain('create');
    expect(bashComplete(script, ['governed', 'runs', 'submit', '--b'])).toEqual(['--budget']);
    expect(bashComplete(script, ['governed', '--api-url', 'http://x', 'runs', 'list', '--phase', ''])).toEqual(expect.arrayContaining(['EXECUTING', 'COMPLETED']));
    expect(bashComplete(script, ['governed', 'completion', ''])).toEqual(['bash', 'zsh']);
    expect(bashComplete(script, ['governed', 'config', 'set', ''])).toEqual(['api-url', 'api-key']);
  });

  it.skipIf(!hasShell('bash') && !process.env.CI)('follows the tree: a command added to it is completed', () => {
    const program = buildProgram();
    program.command('zebra').description('new').command('stripes').option('--count <n>');
    const script = bashCompletion(program);
    expect(bashComplete(script, ['governed', 'ze'])).toEqual(['zebra']);
    expect(bashComplete(script, ['governed', 'zebra', 'stripes', '--co'])).toEqual(['--count']);
  });

  it.skipIf(!hasShell('zsh') && !process.env.CI)('is a zsh script that parses and completes the same tree', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'governed-completion-')), '_governed');
    fs.writeFileSync(file, zshCompletion(buildProgram()));
    // compadd and _describe stubbed: what the completion function would offer.
    const probe = `compdef() { :; }; source "$1"
compadd() { shift; local a=$1; print -r -- "\${(P)a}"; }
_describe() { print -r -- "\${(P)4}"; }
_files() { print files; }
words=(governed runs list --phase ''); CURRENT=5; _governed
words=(governed runs ''); CURRENT=3; _governed`;
    const result = spawnSync('zsh', ['-c', probe, 'zsh', file], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    const [phases, runs] = result.stdout.split('\n');
    expect(phases).toContain('EXECUTING');
    expect(runs).toContain('submit:submit a run');
  });
});
