// The clips are embedded as files (`with { type: 'file' }`): importing one gives its path, which is
// inside the executable once compiled.
declare module '*.ivf' {
  const path: string;
  export default path;
}
declare module '*.h264' {
  const path: string;
  export default path;
}
