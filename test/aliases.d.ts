// The older framework majors are installed under npm aliases; their API, as
// far as the tests use it, is the newer major's.
declare module 'express4' {
  import express from 'express';
  export default express;
}
declare module 'koa2' {
  import Koa from 'koa';
  export default Koa;
}
