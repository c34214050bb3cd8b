// Files the Worker imports as text (wrangler.toml [[rules]] type "Text"): the default export is the file's content.
declare module "*.css" {
  const text: string;
  export default text;
}
declare module "uplot/dist/uPlot.iife.min.js" {
  const text: string;
  export default text;
}
