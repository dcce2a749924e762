export {
  startFaultUpstream,
  faults,
  type FaultUpstream,
  type FaultUpstreamOptions,
  type Behaviour,
  type BehaviourContext,
  type RecordedRequest,
} from './fault-upstream.js';
export { dnsFailureDispatcher, connectHangDispatcher, unreachableDispatcher, refusedUrl } from './fault-dispatchers.js';
