// ESLint (flat config): type-aware rules from typescript-eslint, import cycles, and the folder fences
// of docs/architecture.md. `npm run lint` runs it with --max-warnings 0; `npm test` runs lint first.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';

/** What workflow code may import: the workflow SDK, pure contracts and types (DESIGN: determinism). */
const WORKFLOW_FENCE = {
  patterns: [
    { regex: '^(?!@temporalio/(workflow|common)$)(?!\\.)', message: 'workflows/ imports only @temporalio/workflow|common and relative pure modules', allowTypeImports: true },
    { regex: '^\\.\\./(activities|api|db|workers|scripts)/', message: 'workflows/ may import these folders as types only', allowTypeImports: true },
  ],
};

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
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  // Migrations are frozen in time (Kysely<any>, STYLE.md); tests read untyped JSON bodies.
  { files: ['db/migrations/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts'], rules: { '@typescript-eslint/no-explicit-any': 'off' } },
  { files: ['workflows/**/*.ts'], rules: { 'no-restricted-imports': ['error', WORKFLOW_FENCE] } },
);
