import { Argument, type Command, type Option } from 'commander';

/**
 * Shell completion generated from the program's own command tree (commands, aliases, options,
 * which options take a value, the choices of values and arguments), so it cannot drift from the
 * CLI: a command added to the tree is completed by the next `governed completion bash`.
 */

export interface CompletionOption {
  flags: string[];
  description: string;
  takesValue: boolean;
  choices: string[];
}

export interface CompletionNode {
  /** The command path below the program, space-separated ('' for the program itself). */
  path: string;
  commands: { names: string[]; description: string }[];
  /** Its own options and those of every command above it (commander reads those anywhere on the line). */
  options: CompletionOption[];
  /** Choices of its positional arguments. */
  argumentChoices: string[];
}

function optionOf(option: Option): CompletionOption {
  return {
    flags: [option.long, option.short].filter((f): f is string => Boolean(f)),
    description: option.description,
    takesValue: Boolean(option.required || option.optional),
    choices: option.argChoices ?? [],
  };
}

export function completionTree(program: Command): CompletionNode[] {
  const help = program.createHelp();
  const nodes: CompletionNode[] = [];
  const visit = (command: Command, path: string[], inherited: CompletionOption[]) => {
    const own = help.visibleOptions(command).map(optionOf);
    const seen = new Set(own.flatMap((o) => o.flags));
    const options = [...own, ...inherited.filter((o) => !o.flags.some((f) => seen.has(f)))];
    const children = help.visibleCommands(command);
    nodes.push({
      path: path.join(' '),
      commands: children.map((c) => ({ names: [c.name(), ...c.aliases()], description: c.summary() || c.description() })),
      options,
      argumentChoices: command.registeredArguments.flatMap((a: Argument) => a.argChoices ?? []),
    });
    // --help and --version belong to the command they are on; every other option of a parent is read anywhere.
    const passed = options.filter((o) => !o.flags.includes('--help') && !o.flags.includes('--version'));
    for (const child of command.commands) {
      if (children.includes(child)) visit(child, [...path, child.name()], passed);
    }
  };
  visit(program, [], []);
  return nodes;
}

/** One shell word, quoted for sh, bash and zsh alike. */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** A description on one line, cut to what a completion menu shows. */
const oneLine = (text: string) => {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 72 ? `${line.slice(0, 71)}…` : line;
};

/** The helper functions both scripts share: plain `case` statements, read by bash and zsh alike. */
function helpers(name: string, nodes: CompletionNode[]): string {
  const fn = `_${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
  const cases = (body: (node: CompletionNode) => string | null) =>
    nodes
      .map((node) => {
        const text = body(node);
        return text === null ? null : `    ${shellQuote(node.path)}) ${text} ;;`;
      })
      .filter((line): line is string => line !== null)
      .join('\n');
  const words = (list: string[]) => `echo ${shellQuote(list.join(' '))}`;
  return `${fn}_commands() {
  case "$1" in
${cases((n) => (n.commands.length ? words(n.commands.flatMap((c) => c.names)) : null))}
  esac
}

${fn}_command_descriptions() {
  case "$1" in
${cases((n) => (n.commands.length ? `printf '%s\\n' ${n.commands.flatMap((c) => c.names.map((name) => shellQuote(`${name}:${oneLine(c.description).replace(/:/g, '\\:')}`))).join(' ')}` : null))}
  esac
}

${fn}_options() {
  case "$1" in
${cases((n) => words(n.options.flatMap((o) => o.flags)))}
  esac
}

${fn}_takes_value() {
  case "$1" in
${cases((n) => {
  const valued = n.options.filter((o) => o.takesValue).flatMap((o) => o.flags);
  return valued.length ? `case "$2" in ${valued.join('|')}) return 0 ;; esac` : null;
})}
  esac
  return 1
}

${fn}_values() {
  case "$1|$2" in
${nodes
  .flatMap((n) => [
    ...n.options.filter((o) => o.choices.length).flatMap((o) => o.flags.map((flag) => `    ${shellQuote(`${n.path}|${flag}`)}) ${words(o.choices)} ;;`)),
    ...(n.argumentChoices.length ? [`    ${shellQuote(`${n.path}|`)}) ${words(n.argumentChoices)} ;;`] : []),
  ])
  .join('\n')}
  esac
}

# The command path the words before the cursor name: only known subcommands are taken, and an option's value is skipped.
${fn}_path() {
  local cmd='' i=$1 last=$2 word
  shift 2
  for ((; i < last; i++)); do
    word=\${@:$i:1}
    case "$word" in
      --*=*) ;;
      -*) if ${fn}_takes_value "$cmd" "$word"; then i=$((i + 1)); fi ;;
      *) case " $(${fn}_commands "$cmd") " in *" $word "*) cmd=\${cmd:+$cmd }$word ;; esac ;;
    esac
  done
  echo "$cmd"
}`;
}

export function bashCompletion(program: Command): string {
  const name = program.name();
  const fn = `_${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
  return `# bash completion for ${name}, generated from its commands by \`${name} completion bash\`.
# Load it in this shell: source <(${name} completion bash)
# or for every shell: ${name} completion bash > ~/.local/share/bash-completion/completions/${name}

${helpers(name, completionTree(program))}

${fn}() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} cmd
  cmd=$(${fn}_path 2 $((COMP_CWORD + 1)) "\${COMP_WORDS[@]}")
  if ((COMP_CWORD > 1)) && [[ $prev == -* ]] && ${fn}_takes_value "$cmd" "$prev"; then
    # No choices: the shell's own completion (file names) from -o default.
    COMPREPLY=($(compgen -W "$(${fn}_values "$cmd" "$prev")" -- "$cur"))
    return 0
  fi
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(${fn}_options "$cmd")" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$(${fn}_commands "$cmd") $(${fn}_values "$cmd" '')" -- "$cur"))
  fi
  return 0
}

complete -o default -F ${fn} ${name}
`;
}

export function zshCompletion(program: Command): string {
  const name = program.name();
  const fn = `_${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
  return `#compdef ${name}
# zsh completion for ${name}, generated from its commands by \`${name} completion zsh\`.
# Load it (after compinit) in ~/.zshrc: source <(${name} completion zsh)

${helpers(name, completionTree(program))}

${fn}() {
  local cur=\${words[CURRENT]} prev=\${words[CURRENT-1]} cmd
  local -a found
  # zsh's words are 1-based, the program is word 1.
  cmd=$(${fn}_path 2 $CURRENT "\${words[@]}")
  if (( CURRENT > 2 )) && [[ $prev == -* ]] && ${fn}_takes_value "$cmd" "$prev"; then
    found=(\${=$(${fn}_values "$cmd" "$prev")})
    if (( \${#found} )); then compadd -a found; else _files; fi
    return
  fi
  if [[ $cur == -* ]]; then
    found=(\${=$(${fn}_options "$cmd")})
    compadd -a found
  else
    found=(\${(f)"$(${fn}_command_descriptions "$cmd")"})
    (( \${#found} )) && _describe -t commands command found
    found=(\${=$(${fn}_values "$cmd" '')})
    (( \${#found} )) && compadd -a found
  fi
  return 0
}

compdef ${fn} ${name}
`;
}

export function registerCompletionCommand(program: Command): void {
  program
    .command('completion')
    .description('print a completion script for bash or zsh (commands, subcommands, options and their choices)')
    .addArgument(new Argument('<shell>', 'bash or zsh').choices(['bash', 'zsh']))
    .addHelpText(
      'after',
      `
Examples:
  source <(governed completion bash)     # this shell; add the line to ~/.bashrc for every shell
  source <(governed completion zsh)      # in ~/.zshrc, after compinit`,
    )
    .action((shell: 'bash' | 'zsh') => {
      process.stdout.write(shell === 'bash' ? bashCompletion(program) : zshCompletion(program));
    });
}
