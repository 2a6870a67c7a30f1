"""Everyday words per language for the built-in corpus's random sentences."""
from __future__ import annotations

WORDS = {
    "en": """time people year way day man thing woman life child world school state family student
group country problem hand part place case week company system program question work government
number night point home water room mother area money story fact month lot right study book eye job
word business issue side kind head house service friend father power hour game line end member law
car city community name president team minute idea kid body information back parent face others
level office door health person art war history party result change morning reason research girl
guy moment air teacher force education small green quickly always never bright river under
between after before open close speak listen remember follow bring begin keep hold write stand""",
    "de": """Zeit Jahr Mensch Tag Hand Frau Mann Kind Welt Haus Leben Arbeit Stadt Land Frage Wasser
Schule Freund Weg Stunde Woche Monat Abend Morgen Nacht Familie Vater Mutter Bruder Schwester Buch
Tisch Fenster Garten Baum Wald Berg Fluss Himmel Sonne Regen Schnee Wind Licht Farbe Stimme Sprache
Geschichte Musik Bild Zimmer Stuhl Brot Milch Kaffee Apfel immer nie heute morgen gestern schnell
langsam gross klein schoen alt neu gut schlecht warm kalt hell dunkel gehen kommen sehen hoeren
sprechen lesen schreiben denken wissen machen finden bleiben bringen halten spielen lernen""",
    "fr": """temps homme jour monde vie main femme enfant maison pays chose ville eau travail porte
question ami famille pere mere frere soeur livre table fenetre jardin arbre foret montagne riviere
ciel soleil pluie neige vent lumiere couleur voix langue histoire musique image chambre chaise pain
lait cafe pomme toujours jamais aujourdhui demain hier vite lentement grand petit beau vieux nouveau
bon mauvais chaud froid clair sombre aller venir voir entendre parler lire ecrire penser savoir
faire trouver rester apporter tenir jouer apprendre matin soir nuit semaine mois annee ecole""",
    "es": """tiempo hombre dia mundo vida mano mujer nino casa pais cosa ciudad agua trabajo puerta
pregunta amigo familia padre madre hermano hermana libro mesa ventana jardin arbol bosque montana
rio cielo sol lluvia nieve viento luz color voz lengua historia musica imagen cuarto silla pan leche
cafe manzana siempre nunca hoy manana ayer rapido despacio grande pequeno bonito viejo nuevo bueno
malo caliente frio claro oscuro ir venir ver oir hablar leer escribir pensar saber hacer encontrar
quedar traer tener jugar aprender tarde noche semana mes escuela camino ciudad playa mar""",
    "it": """tempo uomo giorno mondo vita mano donna bambino casa paese cosa citta acqua lavoro porta
domanda amico famiglia padre madre fratello sorella libro tavolo finestra giardino albero bosco
montagna fiume cielo sole pioggia neve vento luce colore voce lingua storia musica immagine camera
sedia pane latte caffe mela sempre mai oggi domani ieri veloce piano grande piccolo bello vecchio
nuovo buono cattivo caldo freddo chiaro scuro andare venire vedere sentire parlare leggere scrivere
pensare sapere fare trovare restare portare tenere giocare imparare sera notte settimana mese""",
}
WORDS = {lang: tuple(text.split()) for lang, text in WORDS.items()}
