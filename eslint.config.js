// ESLint (flat config): type-aware rules from typescript-eslint, import cycles, and the folder
// fences of docs/architecture.md ("may import"). `npm run lint` runs it with --max-warnings 0, and
// `npm test` runs lint before the tests.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';

const FOLDERS = ['contracts', 'domain', 'workflows', 'activities', 'runtime', 'workers', 'api', 'db', 'scripts'];

/**
 * What each folder may import (besides itself and packages). Everything else is fenced off:
 * `import-x/no-restricted-paths` zones are built from this table, so the table is the rule.
 */
const MAY_IMPORT = {
  contracts: [],
  domain: ['contracts'],
  db: ['domain', 'contracts'],
  runtime: ['domain', 'contracts'],
  // Workflows import activities as types only (checked by the workflow fence below).
  workflows: ['domain', 'contracts', 'activities'],
  activities: ['db', 'domain', 'contracts', 'runtime'],
  workers: ['activities', 'workflows', 'db', 'domain', 'contracts', 'runtime'],
  api: ['activities', 'workflows', 'db', 'domain', 'contracts', 'runtime'],
  // Entry points and the composition root: nothing imports them but tests and benchmarks.
  scripts: FOLDERS.filter((f) => f !== 'scripts'),
};

const zones = Object.entries(MAY_IMPORT).map(([target, allowed]) => ({
  target: `./${target}`,
  from: FOLDERS.filter((f) => f !== target && !allowed.includes(f)).map((f) => `./${f}`),
  message: `${target}/ may import only ${allowed.length ? allowed.join(', ') : 'itself'} (docs/architecture.md)`,
})).filter((z) => z.from.length > 0);

/** Workflow code: the workflow SDK, pure modules, and activities as types only (determinism). */
const WORKFLOW_FENCE = {
  patterns: [
    { regex: '^(?!@temporalio/(workflow|common)$)(?!\\.)', message: 'workflows/ imports only @temporalio/workflow|common and relative pure modules', allowTypeImports: true },
    { regex: '^\\.\\./(activities|db|api|workers|runtime|scripts)/', message: 'workflows/ imports activities (and no other I/O folder) as types only', allowTypeImports: true },
  ],
};

/**
 * Pure rules: no I/O, no SDKs, no clock-driven side effects beyond what callers pass in. The
 * `@stdlib` distribution functions (pure math) serve the experiment statistics (`domain/stats/`).
 */
const DOMAIN_FENCE = {
  patterns: [
    { regex: '^(?!\\.)(?!node:crypto$)(?!@stdlib/stats-base-dists-[a-z-]+$)', message: 'domain/ is pure: it imports other domain modules, contracts, node:crypto and @stdlib distribution functions only' },
  ],
};

/** Contracts: pure data and types over `@temporalio/common` (search-attribute keys, activity options). */
const CONTRACTS_FENCE = {
  patterns: [{ regex: '^(?!\\.)(?!@temporalio/common$)', message: 'contracts/ imports only other contracts and @temporalio/common' }],
};

/** Module-level mutable state: one workflow would see another's (workflow modules are shared in a thread). */
const MODULE_STATE = [
  { selector: "Program > VariableDeclaration[kind!='const'], Program > ExportNamedDeclaration > VariableDeclaration[kind!='const']", message: 'no module-level let/var here: the module is shared by every workflow of a workflow thread' },
  // A lookup table typed `ReadonlySet`/`ReadonlyMap` is a constant.
  { selector: "Program > VariableDeclaration > VariableDeclarator:not([id.typeAnnotation.typeAnnotation.typeName.name=/^Readonly/]) > NewExpression.init[callee.name=/^(Map|Set|WeakMap|WeakSet)$/], Program > ExportNamedDeclaration > VariableDeclaration > VariableDeclarator:not([id.typeAnnotation.typeAnnotation.typeName.name=/^Readonly/]) > NewExpression.init[callee.name=/^(Map|Set|WeakMap|WeakSet)$/]", message: 'no module-level mutable collection here (type it ReadonlySet/ReadonlyMap if it is a constant table): the module is shared by every workflow of a workflow thread' },
];

export default tseslint.config(
  { ignores: ['node_modules/**', '.data/**', '.tools/**', '.tmp/**', 'scripts/sluice-cli.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { 'import-x': importX },
    settings: {
      ...importX.flatConfigs.typescript.settings,
      'import-x/resolver-next': [createTypeScriptImportResolver()],
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false, attributes: false } }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'import-x/no-restricted-paths': ['error', { zones }],
    },
  },
  // Migrations are frozen in time (Kysely<any>, STYLE.md); tests and benchmarks read untyped JSON bodies.
  { files: ['db/migrations/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts'], rules: { '@typescript-eslint/no-explicit-any': 'off' } },
  { files: ['workflows/**/*.ts'], rules: { 'no-restricted-imports': ['error', WORKFLOW_FENCE] } },
  { files: ['domain/**/*.ts'], rules: { 'no-restricted-imports': ['error', DOMAIN_FENCE] } },
  { files: ['contracts/**/*.ts'], rules: { 'no-restricted-imports': ['error', CONTRACTS_FENCE] } },
  // The control worker evaluates these modules once per workflow thread and shares them between
  // workflows (`PRELOADED_WORKFLOW_MODULES`, workers/control-worker.ts): no module-level state.
  { files: ['workflows/**/*.ts', 'contracts/**/*.ts', 'domain/**/*.ts'], rules: { 'no-restricted-syntax': ['error', ...MODULE_STATE] } },
);
