// Eunomia console: GraphiQL against this server's own /graphql and /graphql/ws,
// with an optional bearer token kept in localStorage.
import { createRoot } from 'react-dom/client';
import { App } from './App';
import 'graphiql/graphiql.css';
import './console.css';

createRoot(document.getElementById('eunomia-console')!).render(<App />);
