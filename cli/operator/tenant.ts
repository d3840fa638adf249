/**
 * `npm run tenant` (and `tenant:create`): deprecated, kept as a thin alias of `governed tenants`
 * (cli/tenants.ts), the one way to create tenants and keys. It says so in one line on stderr and
 * runs the same command: `create` → `tenants create`, `key` → `tenants keys create`,
 * `suspend|activate --name n` → `tenants suspend|activate --name n`.
 */
const [sub, ...rest] = process.argv.slice(2);
const args = sub === undefined ? ['tenants', '--help'] : sub === 'key' ? ['tenants', 'keys', 'create', ...rest] : ['tenants', sub, ...rest];
console.error(`npm run tenant is deprecated; running: governed ${args.join(' ')}`);
process.argv = [process.argv[0]!, process.argv[1]!, ...args];
require('../main');
