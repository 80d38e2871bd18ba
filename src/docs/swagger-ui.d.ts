// swagger-ui-dist's files, imported `with { type: 'file' }`: each import is the file's path (inside the
// executable once it is compiled).
declare module 'swagger-ui-dist/swagger-ui-bundle.js' {
  const path: string;
  export default path;
}
declare module 'swagger-ui-dist/swagger-ui.css' {
  const path: string;
  export default path;
}
