/** Vite's `?raw` imports (a file's text as a string), used by test helpers such as openapi.ts. */
declare module "*?raw" {
  const text: string;
  export default text;
}
