// eslint for our own JavaScript (`make lint`): the viewer's modules, its fetch worker, the
// pages' small scripts, and the Node tests of tests/js/. The vendored Cornerstone3D bundle and
// its build sources are other people's code.
import js from '@eslint/js';
import globals from 'globals';

export default [
  { ignores: ['static/vendor/**', 'frontend/**', 'staticfiles/**', 'node_modules/**', '.venv/**', 'var/**'] },
  js.configs.recommended,
  {
    files: ['static/**/*.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: globals.browser },
    rules: {
      'no-unused-vars': ['error', { args: 'after-used', caughtErrors: 'none' }],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'no-var': 'error',
      'prefer-const': 'error',
    },
  },
  {
    files: ['static/viewer/fetcher.js'],
    languageOptions: { globals: globals.worker },
  },
  {
    files: ['tests/js/**/*.js', 'eslint.config.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: globals.node },
  },
];
